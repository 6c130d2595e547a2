"""Hostile input against the whole URL surface: schemathesis reads ``/openapi.json`` and sends
generated requests (schema-conforming and schema-violating) to every operation, over real HTTP,
to the gateway on the real Redis, both anvil chains and the CreateOS simulator.

Authenticated operations get, per example, either fresh valid signature headers (a new wallet
each time, signed as the client library signs) or whatever the generator made (malformed or
forged). Every answer must pass: no 5xx, a status the document lists for the operation, the
documented content type, a body matching the documented schema, and the documented headers
(``X-Request-Id`` on every response).

The bounded run (default) sends a few hundred requests with a fixed seed; the long run
(``--run-slow``) many more with a random one and prints its figures (docs/FUZZING.md).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from eth_account import Account
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.routing import Route

from devstack.anvil import AnvilNode
from devstack.server_thread import ServerThread
from devstack.simulator.server import CreateOSSimulator
from gateway.app import create_app
from gateway.config import load_settings
from gateway.web.openapi import AUTH_PARAMETERS, PATHS, build_document
from gateway.web.routes import routes
from tests.deploy_support import SIM_KEY, fresh_config
from tests.support import LOCAL_CONFIG

POSITIVE_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
#: Schema-violating requests must also be refused (4xx), never accepted.
NEGATIVE_CHECKS = [*POSITIVE_CHECKS, negative_data_rejection]
AUTH_HEADERS = ("X-Wallet-Address", "X-Signature", "X-Timestamp", "X-Nonce")
#: Every documented operation; schemathesis skips the document's own path when loading by URL.
FUZZED_OPERATIONS = {
    f"{method.upper()} {path}" for path, methods in PATHS.items() for method in methods
} - {"GET /openapi.json"}


@pytest.fixture(scope="module")
def fuzz_url(
    redis_url: str,
    anvil_nodes: dict[str, AnvilNode],
    sim_server: tuple[CreateOSSimulator, ServerThread],
) -> Iterator[str]:
    """The gateway over real HTTP, with a rate limit high enough not to hide other answers."""
    simulator, sim = sim_server
    simulator.reset()
    simulator.config = fresh_config()
    env = {"REDIS_URL": redis_url, "CREATEOS_API_URL": sim.url, "CREATEOS_API_KEY": SIM_KEY}
    for name, node in anvil_nodes.items():
        env[f"GATEWAY_RPC_{name.upper()}"] = node.url
    settings = load_settings(LOCAL_CONFIG, env).with_overrides(
        redis_key_prefix=f"fuzz:{uuid.uuid4().hex[:12]}:", rate_limit_requests=1_000_000
    )
    with ServerThread(create_app(settings)) as server:
        yield server.url


@dataclass
class Tally:
    """What a run did, for the report."""

    requests: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    operations: set[str] = field(default_factory=set)
    no_negative: set[str] = field(default_factory=set)

    answers: set[tuple[str, int]] = field(default_factory=set)

    def add(self, operation: str, status: int) -> None:
        self.requests += 1
        self.operations.add(operation)
        self.answers.add((operation, status))
        self.by_status[status] = self.by_status.get(status, 0) + 1


_AUTH_PATTERNS = {
    name: re.compile(build_document()["components"]["parameters"][key]["schema"]["pattern"])
    for key, name in (
        ("WalletAddress", "X-Wallet-Address"),
        ("Signature", "X-Signature"),
        ("Timestamp", "X-Timestamp"),
        ("Nonce", "X-Nonce"),
    )
}


def _auth_conforms(headers: dict[str, Any] | None) -> bool:
    """The generated auth headers are all present and match their documented patterns."""
    headers = headers or {}
    return all(
        isinstance(headers.get(name), str) and pattern.search(headers[name]) is not None
        for name, pattern in _AUTH_PATTERNS.items()
    )


def signed_headers() -> dict[str, str]:
    from gateway.client.signing import auth_headers

    return auth_headers(Account.create())


def fuzz(base_url: str, *, examples_per_mode: int, derandomize: bool) -> Tally:
    """Every operation, positive and negative, ``examples_per_mode`` examples each (at most:
    hypothesis stops early on small spaces); raises the first failure it finds."""
    schema = schemathesis.openapi.from_url(base_url + "/openapi.json")
    tally = Tally()
    session = requests.Session()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {o.label for o in operations} == FUZZED_OPERATIONS
    for operation in operations:
        authenticated = any(
            p.get("$ref") == AUTH_PARAMETERS[0]["$ref"]
            for p in PATHS[operation.path][operation.method.lower()].get("parameters", [])
        )
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            run = _examples(
                base_url,
                operation,
                mode,
                authenticated=authenticated,
                session=session,
                tally=tally,
                settings=hypothesis.settings(
                    max_examples=examples_per_mode,
                    deadline=None,
                    derandomize=derandomize,
                    database=None,
                    suppress_health_check=list(HealthCheck),
                    phases=[hypothesis.Phase.generate, hypothesis.Phase.target],
                ),
            )
            try:
                run()
            except hypothesis.errors.Unsatisfiable:
                # Nothing in this operation can be made schema-violating (no body, no
                # constrained parameter): its positive run covers it.
                if mode is GenerationMode.POSITIVE:
                    raise
                tally.no_negative.add(operation.label)
    return tally


def _examples(
    base_url: str,
    operation: Any,
    mode: GenerationMode,
    *,
    authenticated: bool,
    session: requests.Session,
    tally: Tally,
    settings: hypothesis.settings,
) -> Any:
    """A hypothesis test over ``operation``'s cases in ``mode``: each request, then every check."""
    checks = POSITIVE_CHECKS if mode is GenerationMode.POSITIVE else NEGATIVE_CHECKS

    @settings
    @given(case=operation.as_strategy(mode), valid_auth=st.booleans())
    def run(case: Any, valid_auth: bool) -> None:
        headers: dict[str, str] = {}
        # A negative case whose violation is in the auth headers keeps them: replacing them
        # would make it a valid request.
        keep_generated = mode is GenerationMode.NEGATIVE and not _auth_conforms(case.headers)
        if authenticated and valid_auth and not keep_generated:
            headers = signed_headers()
            if case.headers:
                for name in AUTH_HEADERS:
                    case.headers.pop(name, None)
        response = case.call(base_url=base_url, session=session, headers=headers)
        tally.add(operation.label, response.status_code)
        case.validate_response(response, checks=checks, headers=headers)

    return run


def report(tally: Tally, elapsed: float) -> str:
    return (
        f"{tally.requests} requests over {len(tally.operations)} operations in {elapsed:.0f} s; "
        f"statuses {dict(sorted(tally.by_status.items()))}; no schema-violating input possible "
        f"for {len(tally.no_negative)} operations"
    )


def test_fuzz_bounded(fuzz_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """CI: a fixed seed, a few hundred requests over every operation."""
    started = time.monotonic()
    tally = fuzz(fuzz_url, examples_per_mode=12, derandomize=True)
    with capsys.disabled():
        print(f"\nfuzz bounded run: {report(tally, time.monotonic() - started)}")
    assert tally.operations == FUZZED_OPERATIONS
    assert tally.requests >= 200
    assert not any(status >= 500 for status in tally.by_status)
    assert 401 in tally.by_status and 400 in tally.by_status
    # The valid-signature branch got past authentication:
    assert ("GET /agent/credits", 200) in tally.answers
    assert ("GET /agent/projects", 200) in tally.answers


@pytest.mark.slow
def test_fuzz_long(fuzz_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """On demand (``--run-slow``): random seeds, many more examples; prints the figures."""
    started = time.monotonic()
    tally = fuzz(fuzz_url, examples_per_mode=150, derandomize=False)
    elapsed = time.monotonic() - started
    with capsys.disabled():
        print(f"\nfuzz long run: {report(tally, elapsed)}")
    assert not any(status >= 500 for status in tally.by_status)


def test_every_route_is_documented() -> None:
    """``routes.py`` and the document agree; the only documented paths without a route are
    the operator routes (``/admin/*``) being built elsewhere."""
    routed = {
        (r.path, m.lower()) for r in routes if isinstance(r, Route) for m in r.methods or ()
    } - {(path, "head") for path, _ in PATHS.items()}
    documented = {(path, method) for path, methods in PATHS.items() for method in methods}
    assert routed - documented == set()
    assert {path for path, _ in documented - routed} <= {
        path for path in PATHS if path.startswith("/admin/")
    }
