"""The npm payment clients, unchanged (``@x402/fetch`` with ``@x402/evm``, and ``mppx``), pay a
served gateway (``python -m gateway serve``) gasless on both anvil chains; a gateway killed
after broadcasting a settlement, before answering, loses nothing: the same credential retried
on another process credits once with no second broadcast; and one credential sent twenty times
at once through two processes settles once.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from x402 import x402Client
from x402.http.x402_http_client import x402HTTPClient
from x402.mechanisms.evm.exact import ExactEvmClientScheme

from devstack.anvil import AnvilNode
from devstack.gateway_process import GatewayProcess
from gateway.client.signing import auth_headers
from gateway.config import PROJECT_ROOT
from tests.deploy_support import deploy_body
from tests.payment_support import CHAIN_IDS
from tests.payments.test_protocols import (
    PRICE_UNITS,
    SETTLER_KEY,
    b64json,
    chain_lead_seconds,
    challenges,
    eth_balance,
    gasless_payer,
    mpp_credential,
    settler_nonce,
    usdc_transfers,
)
from tests.support import served_gateway

PAY_SCRIPT = PROJECT_ROOT / "tests" / "js" / "pay.mjs"
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(
    NODE is None or not (PROJECT_ROOT / "node_modules" / "mppx").is_dir(),
    reason="node and the npm clients (npm ci) are needed",
)


@pytest.fixture
def served(
    tmp_path: Path, redis_url: str, key_prefix: str, sim_url: str, chains: dict[str, AnvilNode]
) -> Iterator[GatewayProcess]:
    with serve(tmp_path / "one", redis_url, key_prefix, sim_url, chains) as gateway:
        yield gateway


def serve(
    workdir: Path,
    redis_url: str,
    key_prefix: str,
    sim_url: str,
    chains: dict[str, AnvilNode],
    **changes: Any,
) -> Any:
    workdir.mkdir(parents=True, exist_ok=True)
    rpc = {name: node.url for name, node in chains.items()}
    config = {
        "settlement.challenge_ttl_seconds": 600 + chain_lead_seconds(chains),
        "rate_limit.requests": 10_000,
        **changes,
    }
    return served_gateway(
        workdir, redis_url, key_prefix, sim_url, rpc, config, {"GATEWAY_SETTLER_KEY": SETTLER_KEY}
    )


def pay_with(client: str, url: str, chain: str, body: bytes, key: str, tmp: Path) -> Any:
    body_file = tmp / f"{client}-{chain}-body.json"
    body_file.write_bytes(body)
    assert NODE is not None
    done = subprocess.run(
        [NODE, str(PAY_SCRIPT), client, url, chain, str(body_file)],
        env={**os.environ, "PAYER_KEY": key},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=PROJECT_ROOT,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert "error" not in answer, answer["error"]
    return answer


@pytest.mark.parametrize("chain", ["arbitrum", "base"])
@pytest.mark.parametrize("client", ["x402", "mppx"])
def test_stock_npm_client_deploys_gasless_and_its_resent_payment_moves_nothing(
    served: GatewayProcess,
    chains: dict[str, AnvilNode],
    tmp_path: Path,
    client: str,
    chain: str,
) -> None:
    node = chains[chain]
    payer = gasless_payer(node)
    body = json.dumps(deploy_body(f"{client}-{chain}-npm")).encode()
    answer = pay_with(
        client,
        f"{served.url}/agent/deploy",
        chain,
        body,
        "0x" + bytes(payer.key).hex().removeprefix("0x"),
        tmp_path,
    )
    assert answer["status"] == 200, answer
    assert json.loads(answer["body"])["status"] == "deploying"
    headers = answer["headers"]
    receipt = b64json(headers["payment-receipt"])
    assert receipt["status"] == "success" and receipt["chainId"] == CHAIN_IDS[chain]
    # One paid attempt after the 402, in the dialect the client speaks (mppx prefers MPP).
    assert len(answer["sent"]) == 2
    paid = answer["sent"][-1]
    if client == "x402":
        settled = json.loads(base64.b64decode(headers["payment-response"]))
        assert settled["success"] is True and settled["payer"] == payer.address
        assert settled["transaction"] == receipt["reference"]
        payment_header = {"PAYMENT-SIGNATURE": paid["paymentSignature"]}
    else:
        assert paid["authorization"].startswith("Payment ")
        assert "challengeId" in receipt
        payment_header = {"Authorization": paid["authorization"]}

    assert eth_balance(node, payer.address) == 0
    transfers = usdc_transfers(node, payer.address)
    assert [t["transactionHash"] for t in transfers] == [receipt["reference"]]

    nonce_before = settler_nonce(node)
    with httpx.Client(base_url=served.url, timeout=60) as http:
        again = http.post(
            "/agent/deploy",
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-Payment-Chain": chain,
                **payment_header,
            },
        )
    assert again.status_code in (402, 409), again.text
    assert usdc_transfers(node, payer.address) == transfers
    assert settler_nonce(node) == nonce_before


def x402_payment(quote: httpx.Response, payer: Any) -> dict[str, str]:
    """The PAYMENT-SIGNATURE header the stock Python client builds for ``quote``."""
    client = x402Client()
    client.register("eip155:*", ExactEvmClientScheme(payer))
    client.set_spend_controls({"max_amount_per_payment": "$20", "allowed_assets": True})
    http = x402HTTPClient(client)
    required = http.get_payment_required_response(quote.headers.get, None)
    payload = asyncio.run(client.create_payment_payload(required))
    return dict(http.encode_payment_signature_header(payload))


def test_gateway_killed_after_broadcast_is_finished_by_another_without_a_second_tx(
    tmp_path: Path,
    redis_url: str,
    key_prefix: str,
    sim_url: str,
    chains: dict[str, AnvilNode],
) -> None:
    node = chains["arbitrum"]
    payer = gasless_payer(node)
    body = json.dumps(deploy_body("killed-mid-settle")).encode()
    plain = {"Content-Type": "application/json"}
    # Two processes behind one public address, as behind a load balancer; short timeouts
    # keep the killed process's deploy lock short (deploy_lock_ttl_ms).
    public = {
        "gateway.public_url": "http://deploy.test",
        "upstream.connect_timeout_seconds": 0.2,
        "upstream.read_timeout_seconds": 0.5,
        "upstream.upload_timeout_seconds": 2,
        "payments.verify_timeout_seconds": 1,
        "payments.rpc_timeout_seconds": 0.5,
        "settlement.wait_seconds": 1,
    }
    with (
        serve(tmp_path / "one", redis_url, key_prefix, sim_url, chains, **public) as one,
        serve(tmp_path / "two", redis_url, key_prefix, sim_url, chains, **public) as two,
    ):
        with httpx.Client(base_url=one.url, timeout=60) as http:
            quote = http.post("/agent/deploy", content=body, headers=plain)
        assert quote.status_code == 402
        payment = x402_payment(quote, payer)
        nonce_before = settler_nonce(node)

        # Blocks stop: the settlement is broadcast and waits for a receipt that never comes.
        node.set_automine(False)
        request = subprocess.Popen(
            [
                "curl", "-s", "-o", "/dev/null", "-X", "POST", f"{one.url}/agent/deploy",
                "-H", "Content-Type: application/json",
                "-H", f"PAYMENT-SIGNATURE: {payment['PAYMENT-SIGNATURE']}",
                "--data-binary", "@-",
            ],
            stdin=subprocess.PIPE,
        )  # fmt: skip
        assert request.stdin is not None
        request.stdin.write(body)
        request.stdin.close()
        deadline = time.monotonic() + 30
        while settler_nonce(node) == nonce_before:  # pending nonce: the tx is in the pool
            assert time.monotonic() < deadline, "the settlement was never broadcast"
            time.sleep(0.05)
        one.kill()
        request.wait(timeout=10)

        node.mine(1)
        node.set_automine(True)
        with httpx.Client(base_url=two.url, timeout=60) as http:
            deadline = time.monotonic() + 40
            while True:  # the killed process's deploy lock expires on its own
                retried = http.post("/agent/deploy", content=body, headers={**plain, **payment})
                if retried.status_code != 409 or time.monotonic() > deadline:
                    break
                assert retried.json()["code"] == "deploy_in_progress", retried.text
                time.sleep(0.5)
        assert retried.status_code == 200, retried.text
        # One broadcast in all, one transfer, one credit.
        assert settler_nonce(node) == nonce_before + 1
        assert len(usdc_transfers(node, payer.address)) == 1
        with httpx.Client(base_url=two.url, timeout=60) as http:
            credits = http.get("/agent/credits", headers=auth_headers(payer)).json()
        assert credits["balance_usd"] == PRICE_UNITS / 1e6
        assert [e["kind"] for e in credits["ledger"]] == ["payment"]
        one.start()  # served_gateway checks its process is alive when the block ends


def test_one_mpp_credential_twenty_times_at_once_through_two_served_processes_settles_once(
    tmp_path: Path,
    redis_url: str,
    key_prefix: str,
    sim_url: str,
    chains: dict[str, AnvilNode],
) -> None:
    """A challenge issued by one process is checked by the other (its id is an HMAC every
    process can verify), and twenty copies of one credential sent at once through both settle
    once, credit once and deploy once; no answer offers a fresh challenge."""
    node = chains["arbitrum"]
    payer = gasless_payer(node)
    body = json.dumps(deploy_body("crowded-served")).encode()
    plain = {"Content-Type": "application/json"}
    public = {"gateway.public_url": "http://deploy.test"}
    with (
        serve(tmp_path / "one", redis_url, key_prefix, sim_url, chains, **public) as one,
        serve(tmp_path / "two", redis_url, key_prefix, sim_url, chains, **public) as two,
    ):
        with httpx.Client(base_url=one.url, timeout=60) as http:
            quote = http.post("/agent/deploy", content=body, headers=plain)
        assert quote.status_code == 402
        challenge = challenges(quote.headers["WWW-Authenticate"])[0]
        valid_before = int(time.time()) + chain_lead_seconds(chains) + 86400
        credential = mpp_credential(challenge, payer, node, validBefore=valid_before)

        async def crowd() -> list[httpx.Response]:
            async with (
                httpx.AsyncClient(base_url=one.url, timeout=60) as a,
                httpx.AsyncClient(base_url=two.url, timeout=60) as b,
            ):
                return await asyncio.gather(
                    *(
                        (a if i % 2 else b).post(
                            "/agent/deploy",
                            content=body,
                            headers={**plain, "Authorization": credential},
                        )
                        for i in range(20)
                    )
                )

        answers = asyncio.run(crowd())
        statuses = [a.status_code for a in answers]
        assert statuses.count(200) == 1, [a.text for a in answers]
        for answer in answers:
            assert "WWW-Authenticate" not in answer.headers, answer.text
            if answer.status_code == 402:
                assert answer.json()["payment_status"] == "pending", answer.text
            else:
                assert answer.status_code in (200, 409), answer.text
        assert len(usdc_transfers(node, payer.address)) == 1
        with httpx.Client(base_url=two.url, timeout=60) as http:
            credits = http.get("/agent/credits", headers=auth_headers(payer)).json()
        assert credits["balance_usd"] == PRICE_UNITS / 1e6
        assert credits["active_projects"] == 1
