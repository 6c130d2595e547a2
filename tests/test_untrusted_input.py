"""Untrusted bytes against a served gateway (``python -m gateway serve``): bodies, headers, and
the answers of a hostile CreateOS or RPC. Each gets its documented error and the process stays
up (docs/SECURITY.md lists the bounds). A deep body only crashes a served process (uvicorn's
worker thread has its own C stack), so these tests never use the in-process app for it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from eth_account.signers.local import LocalAccount

from devstack.anvil import AnvilNode
from devstack.gateway_process import GatewayProcess
from gateway.config import PROJECT_ROOT
from tests.deploy_support import deploy_body, signed
from tests.payment_support import pay
from tests.support import served_gateway

HALF_USD = 500_000


@pytest.fixture
def served(
    tmp_path: Path, redis_url: str, key_prefix: str, sim_url: str, chains: dict[str, AnvilNode]
) -> Iterator[GatewayProcess]:
    """A served gateway on this test's Redis prefix, the simulator and both anvil chains."""
    rpc = {name: node.url for name, node in chains.items()}
    with served_gateway(tmp_path, redis_url, key_prefix, sim_url, rpc) as gateway:
        yield gateway


def test_importing_the_app_leaves_the_default_recursion_limit() -> None:
    """py_ecc (under eth_account) raises it to 100,000; gateway.chains puts it back."""
    probe = "import sys, gateway.app, gateway.__main__; print(sys.getrecursionlimit())"
    limit = subprocess.run(
        [sys.executable, "-c", probe], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert limit == "1000"


@pytest.mark.parametrize("depth", [100_000, 10_000_000])
def test_deep_body_is_a_400_and_the_process_then_serves_a_paid_deploy(
    served: GatewayProcess, arbitrum: AnvilNode, agent: LocalAccount, depth: int
) -> None:
    with httpx.Client(base_url=served.url, timeout=60) as http:
        deep = http.post("/agent/deploy", content=b"[" * depth, headers=signed(agent))
        assert deep.status_code == 400, deep.text
        assert deep.json()["field"] == "body"
        assert "deeper than" in deep.json()["error"]
        # Deep but closed, and inside a valid object: refused by our bound, not the parser's.
        nested = b'{"uniqueName": ' + b"[" * 40 + b"]" * 40 + b"}"
        answer = http.post("/agent/deploy", content=nested, headers=signed(agent))
        assert answer.status_code == 400 and answer.json()["field"] == "body", answer.text

        tx = pay(arbitrum, agent, HALF_USD)
        paid = http.post(
            "/agent/deploy",
            json=deploy_body(f"after-deep-{depth}"),
            headers=signed(agent, X_Payment_Tx=tx),
        )
        assert paid.status_code == 200, paid.text
        assert paid.json()["projectId"]
