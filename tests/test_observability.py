"""Metrics, request ids, JSON logs and log redaction, on the real stack (Redis, anvil, the
CreateOS simulator over HTTP, the gateway in-process)."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from eth_account.signers.local import LocalAccount
from prometheus_client.parser import text_string_to_metric_families

from devstack.anvil import AnvilNode
from devstack.simulator.server import CreateOSSimulator
from gateway.logs import make_handler, redact_text
from tests.deploy_support import SIM_KEY, deploy_settings, files_upload, random_tx, signed
from tests.payment_support import pay
from tests.support import Gateway, SettingsFactory, running_gateway

ADMIN_TOKEN = "adm-" + "Q" * 8 + "-observability-token"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text page, keyed by name and sorted labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


class LogCapture:
    """Everything logged by any logger while installed, through the gateway's own handler
    (JSON formatter + redactor), at DEBUG so library chatter is included too."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.handler = make_handler(self.stream, "json")

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.text.splitlines() if line.strip()]


@pytest.fixture
def logs() -> Iterator[LogCapture]:
    capture = LogCapture()
    root = logging.getLogger()
    level = root.level
    root.addHandler(capture.handler)
    root.setLevel(logging.DEBUG)
    try:
        yield capture
    finally:
        root.removeHandler(capture.handler)
        root.setLevel(level)


@pytest.fixture
async def admin_gw(
    make_settings: SettingsFactory, chains: dict[str, AnvilNode], sim: CreateOSSimulator
) -> AsyncIterator[Gateway]:
    settings = deploy_settings(make_settings, chains).with_overrides(admin_token=ADMIN_TOKEN)
    async with running_gateway(settings) as gateway:
        yield gateway


async def scrape(gateway: Gateway) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await gateway.client.get(
        "/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


async def test_paid_deploy_shows_the_funnel_and_logs_no_secret(
    admin_gw: Gateway,
    sim: CreateOSSimulator,
    arbitrum: AnvilNode,
    agent: LocalAccount,
    logs: LogCapture,
) -> None:
    """Quote -> payment -> credit -> deploy, plus a replayed tx and a forged signature: the
    funnel counts each step, and no secret of the run appears in any log line."""
    secret_content = base64.b64encode(b"TOP-SECRET-UPLOAD " + os.urandom(64)).decode()
    body = {
        "uniqueName": "metered-app",
        "displayName": "Metered App",
        "upload": files_upload({"server.js": base64.b64decode(secret_content)}),
    }
    sent_signatures: list[str] = []

    async def post_deploy(**extra: str) -> httpx.Response:
        headers = signed(agent, **extra)
        sent_signatures.append(headers["X-Signature"])
        return await admin_gw.client.post("/agent/deploy", json=body, headers=headers)

    quote = await post_deploy()
    assert quote.status_code == 402, quote.text
    tx = pay(arbitrum, agent, int(quote.json()["amount_token"]))
    deployed = await post_deploy(X_Payment_Tx=tx)
    assert deployed.status_code == 200, deployed.text
    replayed = await admin_gw.client.post(
        "/agent/credits/topup", headers=signed(agent, X_Payment_Tx=tx)
    )
    assert replayed.status_code == 409
    unknown = await admin_gw.client.post(
        "/agent/credits/topup", headers=signed(agent, X_Payment_Tx=random_tx())
    )
    assert unknown.status_code == 402 and unknown.json()["payment_status"] == "not_found"

    forged = signed(agent)
    forged["X-Signature"] = "0x" + "ab" * 64 + "1b"
    sent_signatures.append(forged["X-Signature"])
    rejected = await admin_gw.client.get("/agent/credits", headers=forged)
    assert rejected.status_code == 401
    assert (await admin_gw.client.get("/metrics")).status_code == 401  # token required

    m = await scrape(admin_gw)
    arb = ("chain", "arbitrum")
    assert m[("gateway_quotes_issued_total", (arb, ("token", "usdc")))] == 1
    assert m[("gateway_payments_seen_total", (arb,))] == 3
    assert m[("gateway_payments_verified_total", (arb, ("token", "usdc")))] == 1
    assert m[("gateway_credits_added_micro_usd_total", (arb, ("token", "usdc")))] == 500_000
    assert m[("gateway_payments_conflict_total", (arb,))] == 1
    assert m[("gateway_payments_pending_total", (arb, ("status", "not_found")))] == 1
    assert m[("gateway_deploys_total", (("kind", "deploy"), ("outcome", "payment_required")))] == 1
    assert m[("gateway_deploys_total", (("kind", "deploy"), ("outcome", "started")))] == 1
    create = ("endpoint", "POST /projects")
    assert m[("gateway_upstream_request_seconds_count", (create,))] == 1
    upload = ("endpoint", "PUT /projects/{id}/deployments/files/base64")
    assert m[("gateway_upstream_request_seconds_count", (upload,))] == 1
    assert m[("gateway_rpc_request_seconds_count", (arb, ("operation", "get_receipt")))] >= 2
    # The app's metering loop runs once at start-up (it holds the lease in this test).
    assert m[("gateway_metering_runs_total", (("outcome", "ok"),))] >= 1

    text = logs.text
    assert text, "nothing was logged"
    secrets = {
        "agent private key": agent.key.hex(),
        "agent private key (0x)": "0x" + agent.key.hex().removeprefix("0x"),
        "CreateOS API key": SIM_KEY,
        "admin token": ADMIN_TOKEN,
        "upload content": secret_content,
        "upload content (prefix)": secret_content[:40],
    }
    secrets.update({f"signature {i}": sig for i, sig in enumerate(sent_signatures)})
    secrets.update({f"signature {i} (no 0x)": sig[2:] for i, sig in enumerate(sent_signatures)})
    leaked = [name for name, value in secrets.items() if value.lower() in text.lower()]
    assert leaked == []
    lines = logs.lines()  # every line is one JSON object
    deploy_line = next(line for line in lines if line["message"] == "deploy started")
    assert deploy_line["wallet"] == agent.address
    assert deploy_line["path"] == "/agent/deploy" and deploy_line["method"] == "POST"
    assert deploy_line["request_id"] == deployed.headers["x-request-id"]


async def test_metrics_open_without_admin_token_and_not_rate_limited(
    make_settings: SettingsFactory, chains: dict[str, AnvilNode]
) -> None:
    settings = make_settings(chains, rate_limit_requests=2)
    async with running_gateway(settings) as gateway:
        for _ in range(4):
            assert (await gateway.client.get("/agent/chains")).status_code in (200, 429)
        answers = [await gateway.client.get("/metrics") for _ in range(5)]
    assert [a.status_code for a in answers] == [200] * 5
    limited = samples(answers[-1].text)
    assert limited[("gateway_rate_limited_total", (("scope", "request"),))] == 2


async def test_request_id_is_echoed_on_success_and_errors(gw: Gateway) -> None:
    ok = await gw.client.get("/health")
    generated = ok.headers["x-request-id"]
    assert len(generated) == 32 and generated.isalnum()
    assert (await gw.client.get("/health")).headers["x-request-id"] != generated
    given = await gw.client.get("/health", headers={"X-Request-Id": "trace-42.a:b"})
    assert given.headers["x-request-id"] == "trace-42.a:b"
    unsafe = await gw.client.get("/health", headers={"X-Request-Id": "x" * 65})
    assert unsafe.headers["x-request-id"] != "x" * 65
    errors = [
        await gw.client.get("/nowhere"),  # 404 from the router
        await gw.client.delete("/health"),  # 405
        await gw.client.get("/agent/credits"),  # 401
        await gw.client.post("/agent/credits/topup", content=b"x" * 70_000),  # 413, middleware
    ]
    assert [e.status_code for e in errors] == [404, 405, 401, 413]
    ids = [e.headers["x-request-id"] for e in errors]
    assert len(set(ids)) == len(ids) and all(ids)


async def test_access_lines_are_json_with_the_request_fields(
    gw: Gateway, agent: LocalAccount, logs: LogCapture
) -> None:
    response = await gw.client.get("/agent/credits", headers=signed(agent))
    assert response.status_code == 200
    access = [line for line in logs.lines() if line["logger"] == "gateway.access"]
    [line] = [a for a in access if a["request_id"] == response.headers["x-request-id"]]
    assert line["message"] == "request" and line["level"] == "info"
    assert line["method"] == "GET" and line["path"] == "/agent/credits"
    assert line["status"] == 200 and isinstance(line["duration_ms"], float | int)
    assert line["wallet"] == agent.address
    assert str(line["ts"]).endswith("+00:00")


def test_redactor_scrubs_every_kind_of_secret() -> None:
    """The rule itself, through a logger: names, long hex, bearer tokens, blobs, tracebacks;
    tx hashes and addresses stay readable."""
    capture = LogCapture()
    logger = logging.getLogger("tests.redaction")
    logger.addHandler(capture.handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    signature = "0x" + "1f" * 65
    tx = "0x" + "ab" * 32
    address = "0x" + "cd" * 20
    blob = base64.b64encode(os.urandom(60)).decode()
    try:
        logger.info(
            "auth header %s for tx %s from %s",
            signature,
            tx,
            address,
            extra={
                "x_signature": "anything",
                "api_key": "k-123456",
                "private_key": "whatever",
                "headers": {"Authorization": "Bearer abc.def", "X-Nonce": "n-1"},
                "note": f"content={blob}",
            },
        )
        try:
            raise ValueError(f"upstream said Bearer s3cr3t-token and {signature}")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(capture.handler)
    text = capture.text
    for secret in (signature[2:], "anything", "k-123456", "whatever", "abc.def", blob, "s3cr3t"):
        assert secret not in text
    first, second = capture.lines()
    assert tx in str(first["message"]) and address in str(first["message"])
    assert first["headers"] == {"Authorization": "[redacted]", "X-Nonce": "n-1"}
    assert "ValueError" in str(second["exc"])
    assert redact_text("Bearer abc") == "Bearer [redacted]"


def test_serve_logs_json_by_default() -> None:
    from gateway.__main__ import build_parser

    assert build_parser().parse_args(["serve"]).log_format == "json"
    assert build_parser().parse_args(["serve", "--log-format", "text"]).log_format == "text"
