"""Untrusted bytes against a served gateway (``python -m gateway serve``): bodies, headers, and
the answers of a hostile CreateOS or RPC. Each gets its documented error and the process stays
up (docs/SECURITY.md lists the bounds). A deep body only crashes a served process (uvicorn's
worker thread has its own C stack), so these tests never use the in-process app for it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from eth_account.signers.local import LocalAccount
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from devstack.anvil import AnvilNode
from devstack.gateway_process import GatewayProcess
from devstack.server_thread import ServerThread
from gateway.config import PROJECT_ROOT
from tests.deploy_support import deploy_body, signed
from tests.payment_support import pay
from tests.support import SettingsFactory, running_gateway, served_gateway

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


# --- hostile answers -------------------------------------------------------------------------
# A CreateOS or an RPC node that answers huge, deep or endless JSON cannot be made from the real
# simulator or anvil: these stand-ins forward to them and replace one answer.

DEEP = b"[" * 100_000


Replacer = Callable[[Request, bytes], Awaitable[Response | None]]


def _forwarding_app(target: str, replace: Replacer) -> Starlette:
    """A Starlette app passing every request to ``target``, unless ``replace`` answers it."""

    async def forward(request: Request) -> Response:
        body = await request.body()
        replaced = await replace(request, body)
        if replaced is not None:
            return replaced
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in {"host", "content-length"}
        }
        async with httpx.AsyncClient(base_url=target, timeout=30) as http:
            answer = await http.request(
                request.method,
                request.url.path,
                params=request.query_params,
                content=body,
                headers=headers,
            )
        kept = {
            k: v for k, v in answer.headers.items() if k.lower() in {"content-type", "retry-after"}
        }
        return Response(answer.content, status_code=answer.status_code, headers=kept)

    return Starlette(
        routes=[Route("/{path:path}", forward, methods=["GET", "POST", "PUT", "DELETE"])]
    )


async def _huge_json() -> AsyncIterator[bytes]:
    """A well-formed success answer of 20 MB, sent without a Content-Length: only the size
    bound stops it (read whole, it would be taken as a deployment)."""
    yield b'{"status": "success", "data": {"id": "dep-from-a-huge-answer", "pad": "'
    for _ in range(20):
        yield b"a" * 1_000_000
    yield b'"}}'


def _hostile_upload(kind: str) -> Replacer:
    async def replace(request: Request, body: bytes) -> Response | None:
        if not request.url.path.endswith("/deployments/files/base64"):
            return None
        if kind == "deep":
            return Response(DEEP, media_type="application/json")
        return StreamingResponse(_huge_json(), media_type="application/json")

    return replace


@pytest.mark.parametrize("kind", ["deep", "huge"])
def test_hostile_createos_answer_is_a_502_with_the_payment_kept_as_credits(
    tmp_path: Path,
    redis_url: str,
    key_prefix: str,
    sim_url: str,
    chains: dict[str, AnvilNode],
    arbitrum: AnvilNode,
    agent: LocalAccount,
    kind: str,
) -> None:
    rpc = {name: node.url for name, node in chains.items()}
    with (
        ServerThread(_forwarding_app(sim_url, _hostile_upload(kind))) as createos,
        served_gateway(tmp_path, redis_url, key_prefix, createos.url, rpc) as served,
        httpx.Client(base_url=served.url, timeout=60) as http,
    ):
        tx = pay(arbitrum, agent, HALF_USD)
        answer = http.post(
            "/agent/deploy",
            json=deploy_body(f"hostile-{kind}"),
            headers=signed(agent, X_Payment_Tx=tx),
        )
        assert answer.status_code == 502, answer.text
        credits = http.get("/agent/credits", headers=signed(agent))
        assert credits.status_code == 200, credits.text
        # The payment was credited before the upload and stays: one credit, nothing taken.
        assert credits.json()["balance_usd"] == 0.5
        assert [entry["kind"] for entry in credits.json()["ledger"]] == ["payment"]


def _hostile_receipt(kind: str, node_url: str) -> Replacer:
    """A real receipt from anvil, padded with junk logs of another contract to ``huge``
    (100,000 logs, ~20 MB) or ``many`` (1,500 logs, under the size bound but over the log
    count); or a ``deep`` JSON answer. Its real Transfer stays first: without the bounds the
    payment would be credited."""

    async def replace(request: Request, body: bytes) -> Response | None:
        call = json.loads(body)
        if not isinstance(call, dict) or call.get("method") != "eth_getTransactionReceipt":
            return None
        if kind == "deep":
            return Response(b'{"jsonrpc": "2.0", "id": %d, "result": ' % call["id"] + DEEP)
        async with httpx.AsyncClient(timeout=30) as http:
            real = (await http.post(node_url, json=call)).json()
        transfer = real["result"]["logs"][0]
        junk = {**transfer, "address": "0x" + "00" * 19 + "01", "topics": [], "data": "0x"}
        count = 100_000 if kind == "huge" else 1_500
        real["result"]["logs"] = [transfer] + [
            {**junk, "logIndex": hex(i)} for i in range(1, count)
        ]
        return Response(json.dumps(real), media_type="application/json")

    return replace


@pytest.mark.parametrize("kind", ["huge", "many", "deep"])
async def test_hostile_rpc_receipt_is_a_503_and_the_payment_is_not_lost(
    tmp_path: Path,
    redis_url: str,
    key_prefix: str,
    sim_url: str,
    chains: dict[str, AnvilNode],
    arbitrum: AnvilNode,
    agent: LocalAccount,
    make_settings: SettingsFactory,
    kind: str,
) -> None:
    rpc = {"arbitrum": "", "base": chains["base"].url}
    tx = pay(arbitrum, agent, HALF_USD)
    with ServerThread(_forwarding_app(arbitrum.url, _hostile_receipt(kind, arbitrum.url))) as node:
        rpc["arbitrum"] = node.url
        with (
            served_gateway(tmp_path, redis_url, key_prefix, sim_url, rpc) as served,
        ):
            async with httpx.AsyncClient(base_url=served.url, timeout=60) as http:
                headers = signed(agent, X_Payment_Tx=tx)
                answer = await http.post("/agent/credits/topup", headers=headers)
                assert answer.status_code == 503, answer.text
                credits = await http.get("/agent/credits", headers=signed(agent))
                assert credits.json()["balance_usd"] == 0 and credits.json()["ledger"] == []
    # Nothing lost: the same payment is credited once an honest RPC answers.
    async with running_gateway(make_settings(chains)) as gw:
        answer = await gw.client.post(
            "/agent/credits/topup", headers=signed(agent, X_Payment_Tx=tx)
        )
        assert answer.status_code == 200, answer.text
        assert await gw.balance(agent.address) == HALF_USD
