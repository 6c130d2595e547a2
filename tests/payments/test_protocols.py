"""The standard payment dialects on the paid routes (docs/PAYMENTS.md section 6), on real anvil
chains, Redis and the CreateOS simulator: the 402's MPP challenges and x402 offer, the stock
x402 Python client (``x402[httpx,evm]``, unchanged) paying gasless, and every refusal with
nothing sent. The npm clients (``@x402/fetch``, ``mppx``) are driven in test_stock_clients.py.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from x402 import x402Client
from x402.http.clients.httpx import x402AsyncTransport
from x402.mechanisms.evm.exact import ExactEvmClientScheme

from devstack.anvil import ANVIL_ACCOUNTS, AnvilNode
from devstack.simulator.server import CreateOSSimulator
from gateway.client.receipts import ReceiptInvalid, verify_receipt
from gateway.client.signing import auth_headers
from gateway.config import Settings
from gateway.payments.authorization import TRANSFER_WITH_AUTHORIZATION_FIELDS
from gateway.payments.protocols import mpp_nonce
from tests.deploy_support import SIM_KEY, deploy_body, signed
from tests.payment_support import CHAIN_IDS, assert_invariants, payment_settings
from tests.payments.test_settle import chain_nonce as settler_nonce
from tests.payments.test_settle import gasless_payer, usdc_transfers
from tests.support import LOCAL_CONFIG, PAY_TO, Gateway, SettingsFactory, running_gateway

SETTLER, SETTLER_KEY = ANVIL_ACCOUNTS[7]
RECEIPT_SIGNER, RECEIPT_KEY = ANVIL_ACCOUNTS[6]
PRICE_UNITS = 500_000  # config/local.toml: 0.50 USD a month, USDC has 6 decimals
STANDARD_BASE64 = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")


def chain_lead_seconds(nodes: dict[str, AnvilNode]) -> int:
    """How far the shared chains' clocks run ahead of the wall clock (other tests mine many
    blocks); the validity windows the clients sign must cover it, as the token checks them
    against block.timestamp."""
    lead = 0
    for node in nodes.values():
        block = node.rpc("eth_getBlockByNumber", ["latest", False])
        lead = max(lead, int(block["timestamp"], 16) - int(time.time()))
    return lead


def protocol_settings(
    make_settings: SettingsFactory, chains: dict[str, AnvilNode], **overrides: Any
) -> Settings:
    values: dict[str, Any] = {
        "settler_key": SETTLER_KEY,
        "receipt_key": RECEIPT_KEY,
        "createos_api_key": SIM_KEY,
        "challenge_ttl_seconds": 600 + chain_lead_seconds(chains),
    }
    values.update(overrides)
    return payment_settings(make_settings, chains, **values)


@pytest.fixture
async def gw(
    make_settings: SettingsFactory, chains: dict[str, AnvilNode], sim: CreateOSSimulator
) -> AsyncIterator[Gateway]:
    async with running_gateway(protocol_settings(make_settings, chains)) as gateway:
        yield gateway
        await assert_invariants(gateway)


def eth_balance(node: AnvilNode, address: str) -> int:
    return int(node.rpc("eth_getBalance", [address, "latest"]), 16)


def b64json(value: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))


def challenges(header: str) -> list[dict[str, str]]:
    """The ``Payment`` challenges of a ``WWW-Authenticate`` value, parameters by name."""
    found = []
    for part in re.split(r",\s*(?=Payment )", header):
        assert part.startswith("Payment ")
        found.append(dict(re.findall(r'(\w+)="([^"]*)"', part)))
    return found


class Recording(httpx.AsyncBaseTransport):
    """The inner transport under a stock client: keeps every request it sends, and (given an
    account) signs fresh wallet headers on every attempt, as docs/PAYMENTS.md tells agents."""

    def __init__(self, inner: httpx.AsyncBaseTransport, account: LocalAccount | None = None):
        self.inner = inner
        self.account = account
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.account is not None:
            for name, value in auth_headers(self.account).items():
                request.headers[name] = value
        self.requests.append(request)
        return await self.inner.handle_async_request(request)


def x402_client(
    gateway: Gateway,
    payer: LocalAccount,
    *,
    chain: str | None = None,
    auth: LocalAccount | None = None,
) -> tuple[httpx.AsyncClient, Recording]:
    """The stock x402 httpx client paying as ``payer``, its spend cap raised above the $1
    default as docs/PAYMENTS.md says; ``chain`` steers it with the gateway's own header."""
    client = x402Client()
    client.register("eip155:*", ExactEvmClientScheme(payer))
    client.set_spend_controls({"max_amount_per_payment": "$20", "allowed_assets": True})
    recording = Recording(gateway.client._transport, auth)
    headers = {"X-Payment-Chain": chain} if chain else {}
    return (
        httpx.AsyncClient(
            transport=x402AsyncTransport(client, transport=recording),
            base_url="http://gateway",
            headers=headers,
            timeout=60.0,
        ),
        recording,
    )


async def signed_receipt(
    gateway: Gateway, response: httpx.Response, payer: str, tx: str | None
) -> dict[str, Any]:
    """The answer's Gateway-Receipt, verified against the key ``GET /agent/receipts`` names."""
    published = (await gateway.client.get("/agent/receipts")).json()
    assert published["address"] == RECEIPT_SIGNER
    return verify_receipt(response.headers["Gateway-Receipt"], published, payer=payer, tx=tx)


# --- the 402 speaks three dialects ---------------------------------------------------------


async def test_quote_without_wallet_headers_offers_mpp_and_x402_on_every_usdc_chain(
    gw: Gateway, sim: CreateOSSimulator
) -> None:
    body = json.dumps(deploy_body("quoted-app")).encode()
    response = await gw.client.post(
        "/agent/deploy", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 402
    quote = response.json()
    assert quote["amount_token"] == str(PRICE_UNITS)
    assert quote["current_credit_balance_usd"] is None and quote["active_projects"] is None
    assert response.headers["Cache-Control"] == "no-store"

    header = response.headers["PAYMENT-REQUIRED"]
    assert STANDARD_BASE64.match(header)
    required = json.loads(base64.b64decode(header))
    assert required["x402Version"] == 2
    assert required["resource"] == {"url": "http://gateway/agent/deploy"}
    assert [a["network"] for a in required["accepts"]] == ["eip155:42161", "eip155:8453"]
    for accept, name in zip(required["accepts"], ["arbitrum", "base"], strict=True):
        assert accept["scheme"] == "exact"
        assert accept["amount"] == str(PRICE_UNITS)
        assert accept["payTo"] == PAY_TO
        assert accept["asset"] == gw.settings.chains[name].tokens["usdc"].address
        assert accept["extra"] == {
            "assetTransferMethod": "eip3009",
            "name": "USD Coin",
            "version": "2",
        }

    offered = challenges(response.headers["WWW-Authenticate"])
    assert len(offered) == 2
    digest = "sha-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode()
    for challenge, chain_id in zip(offered, [42161, 8453], strict=True):
        assert challenge["method"] == "evm" and challenge["intent"] == "charge"
        assert challenge["realm"] == "gateway"
        assert challenge["digest"] == digest
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", challenge["expires"])
        request = b64json(challenge["request"])
        assert request == {
            "amount": str(PRICE_UNITS),
            "currency": required["accepts"][0 if chain_id == 42161 else 1]["asset"],
            "recipient": PAY_TO,
            "methodDetails": {
                "chainId": chain_id,
                "credentialTypes": ["authorization"],
                "decimals": 6,
            },
        }
    # Nothing was created upstream for a quote.
    assert not [r for r in sim.requests if r.path == "/v1/projects"]


async def test_the_quote_chain_comes_first_and_the_public_url_is_configurable(
    make_settings: SettingsFactory, chains: dict[str, AnvilNode], sim: CreateOSSimulator
) -> None:
    settings = protocol_settings(make_settings, chains, public_url="https://deploy.example.com")
    async with running_gateway(settings) as gateway:
        response = await gateway.client.post(
            "/agent/deploy", json=deploy_body("based-app"), headers={"X-Payment-Chain": "base"}
        )
    assert response.status_code == 402
    required = json.loads(base64.b64decode(response.headers["PAYMENT-REQUIRED"]))
    assert required["resource"]["url"] == "https://deploy.example.com/agent/deploy"
    assert [a["network"] for a in required["accepts"]] == ["eip155:8453", "eip155:42161"]
    offered = challenges(response.headers["WWW-Authenticate"])
    assert {c["realm"] for c in offered} == {"deploy.example.com"}
    assert b64json(offered[0]["request"])["methodDetails"]["chainId"] == 8453


async def test_without_a_settler_key_the_402_offers_no_protocol_and_needs_a_wallet(
    make_settings: SettingsFactory, chains: dict[str, AnvilNode], agent: LocalAccount
) -> None:
    settings = payment_settings(make_settings, chains, createos_api_key=SIM_KEY)
    async with running_gateway(settings) as gateway:
        anonymous = await gateway.client.post("/agent/deploy", json=deploy_body())
        quoted = await gateway.client.post(
            "/agent/deploy", json=deploy_body(), headers=signed(agent)
        )
    assert anonymous.status_code == 401
    assert quoted.status_code == 402
    assert "PAYMENT-REQUIRED" not in quoted.headers
    assert "WWW-Authenticate" not in quoted.headers


async def test_two_payment_headers_are_a_400_and_a_tx_hash_needs_the_wallet_headers(
    gw: Gateway, agent: LocalAccount
) -> None:
    tx = "0x" + "ab" * 32
    pairs = [
        {"X-Payment-Tx": tx, "PAYMENT-SIGNATURE": "e30="},
        {"X-Payment-Tx": tx, "Authorization": "Payment e30"},
        {"PAYMENT-SIGNATURE": "e30=", "Authorization": "Payment e30"},
    ]
    for headers in pairs:
        response = await gw.client.post(
            "/agent/deploy", json=deploy_body(), headers={**signed(agent), **headers}
        )
        assert response.status_code == 400, headers
        assert response.json()["code"] == "two_payments"
    unsigned = await gw.client.post(
        "/agent/deploy", json=deploy_body(), headers={"X-Payment-Tx": tx}
    )
    assert unsigned.status_code == 401


# --- the stock x402 Python client pays gasless -----------------------------------------------


@pytest.mark.parametrize("name", ["arbitrum", "base"])
async def test_stock_x402_client_deploys_gasless_and_a_resent_payment_moves_nothing(
    gw: Gateway, chains: dict[str, AnvilNode], sim: CreateOSSimulator, name: str
) -> None:
    node = chains[name]
    payer = gasless_payer(node)
    client, recording = x402_client(gw, payer, chain=name)
    async with client:
        response = await client.post("/agent/deploy", json=deploy_body(f"x402-{name}"))
    assert response.status_code == 200, response.text
    deployed = response.json()
    assert deployed["status"] == "deploying" and "warning" not in deployed
    assert response.headers["Cache-Control"] == "private"

    settled = json.loads(base64.b64decode(response.headers["PAYMENT-RESPONSE"]))
    assert settled["success"] is True
    assert settled["network"] == f"eip155:{CHAIN_IDS[name]}"
    assert settled["payer"] == payer.address
    receipt = b64json(response.headers["Payment-Receipt"])
    assert receipt["status"] == "success" and receipt["method"] == "evm"
    assert receipt["reference"] == settled["transaction"]
    assert receipt["chainId"] == CHAIN_IDS[name]
    signed = await signed_receipt(gw, response, payer.address, settled["transaction"])
    assert signed["creditedMicroUsd"] == PRICE_UNITS and signed["balanceMicroUsd"] == PRICE_UNITS
    assert signed["chainId"] == CHAIN_IDS[name]
    assert signed["requestId"] == response.headers["X-Request-Id"]

    # Gasless: the payer spent no ETH, and exactly one USDC transfer reached pay_to.
    assert eth_balance(node, payer.address) == 0
    transfers = usdc_transfers(node, payer.address)
    assert [t["transactionHash"] for t in transfers] == [settled["transaction"]]
    # The payer is the wallet of the request: it owns the project and holds the credit.
    owned = await gw.services.ownership.projects_of(payer.address)
    assert [p.project_id for p in owned] == [deployed["projectId"]]
    assert await gw.balance(payer.address) == PRICE_UNITS

    # The same payment header sent again: refused, nothing moves.
    paid = recording.requests[-1]
    nonce_before = settler_nonce(node)
    again = await gw.client.post(
        "/agent/deploy",
        content=paid.content,
        headers={
            "Content-Type": "application/json",
            "PAYMENT-SIGNATURE": paid.headers["PAYMENT-SIGNATURE"],
            "X-Payment-Chain": name,
        },
    )
    assert again.status_code in (402, 409), again.text
    assert "PAYMENT-RESPONSE" not in again.headers
    assert usdc_transfers(node, payer.address) == transfers
    assert settler_nonce(node) == nonce_before
    assert await gw.balance(payer.address) == PRICE_UNITS


async def test_with_wallet_headers_the_payer_must_be_that_wallet(
    gw: Gateway, chains: dict[str, AnvilNode], sim: CreateOSSimulator
) -> None:
    node = chains["arbitrum"]
    payer = gasless_payer(node)
    # Fresh wallet headers on every attempt, of the payer itself: deploys.
    client, recording = x402_client(gw, payer, auth=payer)
    async with client:
        response = await client.post("/agent/deploy", json=deploy_body("own-wallet"))
    assert response.status_code == 200, response.text
    nonces = {r.headers["X-Nonce"] for r in recording.requests}
    assert len(nonces) == len(recording.requests) == 2

    # Someone else's wallet headers over the payer's authorization: refused, nothing sent.
    other: LocalAccount = Account.create()
    client, recording = x402_client(gw, payer, auth=other)
    nonce_before = settler_nonce(node)
    async with client:
        refused = await client.post("/agent/deploy", json=deploy_body("not-own-wallet"))
    assert refused.status_code == 402
    assert refused.json()["reason"] == "payer_mismatch"
    assert "PAYMENT-REQUIRED" in refused.headers  # nothing was sent: a fresh offer
    assert settler_nonce(node) == nonce_before
    assert len(usdc_transfers(node, payer.address)) == 1


async def test_same_credential_twenty_times_at_once_through_two_processes_settles_once(
    make_settings: SettingsFactory, chains: dict[str, AnvilNode], sim: CreateOSSimulator
) -> None:
    node = chains["arbitrum"]
    payer = gasless_payer(node)
    settings = protocol_settings(make_settings, chains)
    async with running_gateway(settings) as one, running_gateway(settings) as two:
        body = json.dumps(deploy_body("crowded")).encode()
        quote = await one.client.post(
            "/agent/deploy", content=body, headers={"Content-Type": "application/json"}
        )
        client = x402Client()
        client.register("eip155:*", ExactEvmClientScheme(payer))
        client.set_spend_controls({"max_amount_per_payment": "$20", "allowed_assets": True})
        from x402.http.x402_http_client import x402HTTPClient

        http = x402HTTPClient(client)
        required = http.get_payment_required_response(quote.headers.get, None)
        payload = await client.create_payment_payload(required)
        header = http.encode_payment_signature_header(payload)

        async def send(gateway: Gateway) -> httpx.Response:
            return await gateway.client.post(
                "/agent/deploy",
                content=body,
                headers={"Content-Type": "application/json", **header},
            )

        answers = await asyncio.gather(*(send(one if i % 2 else two) for i in range(20)))
        statuses = sorted(a.status_code for a in answers)
        assert statuses.count(200) == 1, [a.text for a in answers]
        for answer in answers:
            if answer.status_code == 402:
                # In flight elsewhere: pending, and never a fresh offer to sign again.
                assert answer.json().get("payment_status") == "pending", answer.text
                assert "PAYMENT-REQUIRED" not in answer.headers
                assert "WWW-Authenticate" not in answer.headers
            else:
                assert answer.status_code in (200, 409), answer.text
        assert len(usdc_transfers(node, payer.address)) == 1
        assert await one.balance(payer.address) == PRICE_UNITS
        await assert_invariants(one)


# --- MPP credentials refused with nothing sent -------------------------------------------------


def mpp_credential(
    challenge: dict[str, str],
    payer: LocalAccount,
    node: AnvilNode,
    *,
    key: str | None = None,
    **overrides: Any,
) -> str:
    """An ``Authorization: Payment`` value as mppx builds it (docs/PROTOCOLS.md 2.3-2.4)."""
    request = b64json(challenge["request"])
    message: dict[str, Any] = {
        "from": payer.address,
        "to": request["recipient"],
        "value": int(request["amount"]),
        "validAfter": 0,
        "validBefore": int(
            time.mktime(time.strptime(challenge["expires"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
        ),
        "nonce": mpp_nonce(challenge["id"], challenge["realm"]),
    }
    message.update(overrides)
    domain = {
        "name": "USD Coin",
        "version": "2",
        "chainId": request["methodDetails"]["chainId"],
        "verifyingContract": request["currency"],
    }
    types = {"TransferWithAuthorization": TRANSFER_WITH_AUTHORIZATION_FIELDS}
    signature = Account.sign_typed_data(key or payer.key, domain, types, message).signature
    credential = {
        "challenge": {k: challenge[k] for k in challenge},
        "payload": {
            "type": "authorization",
            "from": message["from"],
            "to": message["to"],
            "value": str(message["value"]),
            "validAfter": str(message["validAfter"]),
            "validBefore": str(message["validBefore"]),
            "nonce": "0x" + bytes(message["nonce"]).hex(),
            "signature": "0x" + bytes(signature).hex(),
        },
        "source": f"did:pkh:eip155:{request['methodDetails']['chainId']}:{payer.address}",
    }
    encoded = base64.urlsafe_b64encode(json.dumps(credential).encode()).rstrip(b"=").decode()
    return "Payment " + encoded


async def mpp_challenge(gateway: Gateway, body: bytes) -> dict[str, str]:
    response = await gateway.client.post(
        "/agent/deploy", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 402
    return challenges(response.headers["WWW-Authenticate"])[0]


async def pay_mpp(gateway: Gateway, body: bytes, credential: str) -> httpx.Response:
    return await gateway.client.post(
        "/agent/deploy",
        content=body,
        headers={"Content-Type": "application/json", "Authorization": credential},
    )


async def test_mpp_credential_settles_and_deploys(
    gw: Gateway, chains: dict[str, AnvilNode], sim: CreateOSSimulator
) -> None:
    node = chains["arbitrum"]
    payer = gasless_payer(node)
    body = json.dumps(deploy_body("mpp-app")).encode()
    challenge = await mpp_challenge(gw, body)
    response = await pay_mpp(gw, body, mpp_credential(challenge, payer, node))
    assert response.status_code == 200, response.text
    receipt = b64json(response.headers["Payment-Receipt"])
    assert receipt["challengeId"] == challenge["id"]
    assert "PAYMENT-RESPONSE" not in response.headers
    assert len(usdc_transfers(node, payer.address)) == 1
    assert eth_balance(node, payer.address) == 0


def _tamper_request(challenge: dict[str, str]) -> dict[str, str]:
    request = b64json(challenge["request"])
    request["amount"] = "1"
    encoded = json.dumps(request, sort_keys=True, separators=(",", ":")).encode()
    return {**challenge, "request": base64.urlsafe_b64encode(encoded).rstrip(b"=").decode()}


@pytest.mark.parametrize(
    "case",
    [
        "expired",
        "underpaying",
        "wrong_recipient",
        "wrong_chain",
        "tampered_request",
        "tampered_body",
        "bad_signature",
        "wrong_nonce",
        "replayed_challenge",
    ],
)
async def test_bad_mpp_credential_is_refused_with_nothing_sent(
    gw: Gateway, chains: dict[str, AnvilNode], sim: CreateOSSimulator, case: str
) -> None:
    node = chains["arbitrum"]
    payer = gasless_payer(node)
    body = json.dumps(deploy_body(f"bad-{case.replace('_', '-')}")).encode()
    challenge = await mpp_challenge(gw, body)
    sent_body = body
    expected = {
        "expired": "expired",
        "underpaying": "underpaid",
        "wrong_recipient": "wrong_recipient",
        "wrong_chain": "unknown_challenge",
        "tampered_request": "unknown_challenge",
        "tampered_body": "body_mismatch",
        "bad_signature": "bad_signature",
        "wrong_nonce": "nonce_mismatch",
        "replayed_challenge": "challenge_used",
    }[case]
    if case == "expired":
        credential = mpp_credential(challenge, payer, node, validBefore=int(time.time()) + 5)
    elif case == "underpaying":
        credential = mpp_credential(challenge, payer, node, value=PRICE_UNITS - 1)
    elif case == "wrong_recipient":
        credential = mpp_credential(challenge, payer, node, to=Account.create().address)
    elif case == "wrong_chain":
        other = challenges(
            (
                await gw.client.post(
                    "/agent/deploy",
                    content=body,
                    headers={"Content-Type": "application/json", "X-Payment-Chain": "base"},
                )
            ).headers["WWW-Authenticate"]
        )[0]
        # Base's challenge with Arbitrum's request: not what we issued.
        credential = mpp_credential({**other, "request": challenge["request"]}, payer, node)
    elif case == "tampered_request":
        credential = mpp_credential(_tamper_request(challenge), payer, node)
    elif case == "tampered_body":
        credential = mpp_credential(challenge, payer, node)
        sent_body = json.dumps(deploy_body("bad-tampered-body", months=2)).encode()
    elif case == "bad_signature":
        credential = mpp_credential(challenge, payer, node, key=Account.create().key)
    elif case == "wrong_nonce":
        credential = mpp_credential(challenge, payer, node, nonce=b"\x01" * 32)
    else:  # another payer already used this challenge (and its deploy failed upstream)
        first = gasless_payer(node)
        sim.fail_next("POST", r"/v1/projects$", status=400)
        used = await pay_mpp(gw, body, mpp_credential(challenge, first, node))
        assert used.status_code == 502, used.text
        credential = mpp_credential(challenge, payer, node)
    nonce_before = settler_nonce(node)
    response = await pay_mpp(gw, sent_body, credential)
    assert response.status_code == 402, response.text
    refusal = response.json()
    assert refusal["reason"] == expected, refusal
    assert refusal["settlement"] == "refused"
    # Nothing was broadcast, so a fresh challenge is offered.
    assert challenges(response.headers["WWW-Authenticate"])
    assert settler_nonce(node) == nonce_before
    assert usdc_transfers(node, payer.address) == []
    assert await gw.balance(payer.address) == 0


# --- top-ups ---------------------------------------------------------------------------------


async def test_stock_x402_client_tops_up_the_amount_it_was_offered(
    gw: Gateway, chains: dict[str, AnvilNode]
) -> None:
    node = chains["base"]
    payer = gasless_payer(node)
    quoted = await gw.client.post("/agent/credits/topup?amount_usd=2.5")
    assert quoted.status_code == 402
    assert quoted.json()["amount_usd"] == 2.5
    required = json.loads(base64.b64decode(quoted.headers["PAYMENT-REQUIRED"]))
    assert {a["amount"] for a in required["accepts"]} == {"2500000"}

    client, _ = x402_client(gw, payer, chain="base")
    async with client:
        response = await client.post("/agent/credits/topup?amount_usd=2.5")
    assert response.status_code == 200, response.text
    credited = response.json()
    assert credited["wallet"] == payer.address and credited["balance_usd"] == 2.5
    assert credited["chain"] == "base"
    assert json.loads(base64.b64decode(response.headers["PAYMENT-RESPONSE"]))["success"]
    signed = await signed_receipt(gw, response, payer.address, credited["tx"])
    assert signed["creditedMicroUsd"] == 2_500_000
    assert await gw.balance(payer.address) == 2_500_000
    assert eth_balance(node, payer.address) == 0


async def test_topup_amount_is_validated(gw: Gateway) -> None:
    for amount in ("0", "-1", "abc", "1.0000001", "10000.01"):
        response = await gw.client.post(f"/agent/credits/topup?amount_usd={amount}")
        assert response.status_code == 400, amount
        assert response.json()["field"] == "amount_usd"


# --- signed receipts on every paid answer ----------------------------------------------------


async def test_a_pushed_payment_gets_a_signed_receipt_too_and_a_forgery_does_not_verify(
    gw: Gateway, chains: dict[str, AnvilNode], sim: CreateOSSimulator
) -> None:
    from tests.payment_support import pay

    payer = Account.create()
    tx = pay(chains["arbitrum"], payer, PRICE_UNITS)
    response = await gw.client.post(
        "/agent/deploy", json=deploy_body("pushed-receipt"), headers=signed(payer, X_Payment_Tx=tx)
    )
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "private"
    assert "Payment-Receipt" not in response.headers  # no protocol was used
    receipt = await signed_receipt(gw, response, payer.address, tx)
    assert receipt["creditedMicroUsd"] == PRICE_UNITS

    published = (await gw.client.get("/agent/receipts")).json()
    with pytest.raises(ReceiptInvalid, match="not"):
        verify_receipt(response.headers["Gateway-Receipt"], published, payer=SETTLER, tx=tx)
    forged = {**published, "address": Account.create().address}
    with pytest.raises(ReceiptInvalid, match="signed by"):
        verify_receipt(response.headers["Gateway-Receipt"], forged, payer=payer.address, tx=tx)
    # A deploy on credits alone carries no receipt: nothing was paid.
    await gw.credit(payer.address, 10_000_000)
    on_credits = await gw.client.post(
        "/agent/deploy",
        json=deploy_body("on-credits"),
        headers=signed(payer, X_Use_Existing_Credits="true"),
    )
    assert on_credits.status_code == 200, on_credits.text
    assert "Gateway-Receipt" not in on_credits.headers


# --- the settler's gas -----------------------------------------------------------------------


async def test_settler_gas_is_reported_recorded_per_payment_and_offers_stop_without_it(
    gw: Gateway, chains: dict[str, AnvilNode], sim: CreateOSSimulator
) -> None:
    from tests.support import metric_value

    ready = (await gw.client.get("/health/ready")).json()
    assert ready["status"] == "ok" and ready["settler"] == SETTLER
    assert ready["checks"]["settler:arbitrum"] == "ok"

    node = chains["arbitrum"]
    payer = gasless_payer(node)
    client, _ = x402_client(gw, payer)
    async with client:
        paid = await client.post("/agent/deploy", json=deploy_body("gas-costed"))
    assert paid.status_code == 200, paid.text
    tx = json.loads(base64.b64decode(paid.headers["PAYMENT-RESPONSE"]))["transaction"]
    receipt = node.rpc("eth_getTransactionReceipt", [tx])
    cost = int(receipt["gasUsed"], 16) * int(receipt["effectiveGasPrice"], 16)
    records = [
        await gw.services.store.hash(key)
        for key in await raw_keys(gw, "settle:42161:*" + payer.address[2:].lower() + "*")
    ]
    assert [r["gas_wei"] for r in records] == [str(cost)]
    metrics = (await gw.client.get("/metrics")).text
    assert metric_value(metrics, 'gateway_settlement_gas_wei_total{chain="arbitrum"}') == cost
    assert (
        metric_value(metrics, 'gateway_settlements_total{chain="arbitrum",outcome="settled"}') == 1
    )

    # The settler runs dry on Arbitrum: readiness degrades (still 200: pushed payments go on)
    # and Arbitrum's gasless offers are withdrawn; Base's stay.
    node.set_balance(SETTLER, 10**9)
    low = await gw.client.get("/health/ready")
    assert low.status_code == 200
    assert low.json()["status"] == "degraded"
    assert low.json()["degraded"] == ["settler:arbitrum"]
    assert low.json()["checks"]["settler:arbitrum"].startswith("low: 1000000000 wei")
    quote = await gw.client.post("/agent/deploy", json=deploy_body("dry-settler"))
    required = json.loads(base64.b64decode(quote.headers["PAYMENT-REQUIRED"]))
    assert [a["network"] for a in required["accepts"]] == ["eip155:8453"]
    assert len(challenges(quote.headers["WWW-Authenticate"])) == 1
    node.set_balance(SETTLER, 10**21)
    assert gw.services.gasless is not None
    await gw.services.gasless.refresh_gas()  # the watch would, within settle_gas_check_seconds
    quote = await gw.client.post("/agent/deploy", json=deploy_body("wet-settler"))
    required = json.loads(base64.b64decode(quote.headers["PAYMENT-REQUIRED"]))
    assert len(required["accepts"]) == 2


async def raw_keys(gateway: Gateway, pattern: str) -> list[str]:
    from tests.support import raw_redis

    redis = raw_redis(gateway.services.store)
    prefix = gateway.settings.redis_key_prefix
    return [
        k.decode() if isinstance(k, bytes) else k async for k in redis.scan_iter(prefix + pattern)
    ]


def test_operator_settler_command_shows_gas_and_settlements_in_flight(
    make_settings: SettingsFactory, chains: dict[str, AnvilNode], redis_url: str, key_prefix: str
) -> None:
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "GATEWAY_SETTLER_KEY": SETTLER_KEY,
        "GATEWAY_CONFIG": str(LOCAL_CONFIG),
        "GATEWAY_RPC_ARBITRUM": chains["arbitrum"].url,
        "GATEWAY_RPC_BASE": chains["base"].url,
    }
    chains["base"].set_balance(SETTLER, 10**9)
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "settler", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["settler"] == SETTLER
    assert report["gas"]["base"] == {"wei": 10**9, "low": True}
    assert report["gas"]["arbitrum"]["low"] is False
    assert isinstance(report["in_flight"], int)
    text = subprocess.run(
        [sys.executable, "-m", "gateway", "settler"], env=env, capture_output=True, text=True
    )
    assert "base: 1000000000 wei  LOW: gasless offers withdrawn" in text.stdout
    unset = subprocess.run(
        [sys.executable, "-m", "gateway", "settler"],
        env={k: v for k, v in env.items() if k != "GATEWAY_SETTLER_KEY"},
        capture_output=True,
        text=True,
    )
    assert unset.returncode == 2 and "GATEWAY_SETTLER_KEY" in unset.stderr


async def test_a_credential_retried_after_its_challenge_expired_reconciles_its_payment(
    make_settings: SettingsFactory, chains: dict[str, AnvilNode], sim: CreateOSSimulator
) -> None:
    """mppx signs again for a new challenge. A payment already sent whose retry comes after
    its challenge expired is that payment, finished: 200, never a new challenge. An expired
    challenge that paid nothing yet is refused with a new one."""
    from devstack.clock import ManualClock

    clock = ManualClock(time.time())
    settings = protocol_settings(make_settings, chains, settle_wait_seconds=0.3)
    node = chains["arbitrum"]
    async with running_gateway(settings, clock=clock) as gateway:
        payer = gasless_payer(node)
        body = json.dumps(deploy_body("late-retry")).encode()
        challenge = await mpp_challenge(gateway, body)
        valid_before = int(time.time()) + chain_lead_seconds(chains) + 86400
        credential = mpp_credential(challenge, payer, node, validBefore=valid_before)
        node.set_automine(False)
        pending = await pay_mpp(gateway, body, credential)
        assert pending.status_code == 402 and pending.json()["payment_status"] == "pending"
        assert "WWW-Authenticate" not in pending.headers
        node.mine(1)
        node.set_automine(True)
        clock.advance(settings.challenge_ttl_seconds + 60)  # the challenge has expired

        late = await pay_mpp(gateway, body, credential)
        assert late.status_code == 200, late.text
        assert len(usdc_transfers(node, payer.address)) == 1

        other = gasless_payer(node)
        body = json.dumps(deploy_body("late-first-try")).encode()
        stale = await mpp_challenge(gateway, body)
        clock.advance(settings.challenge_ttl_seconds + 60)
        refused = await pay_mpp(
            gateway, body, mpp_credential(stale, other, node, validBefore=valid_before)
        )
        assert refused.status_code == 402
        assert refused.json()["reason"] == "challenge_expired"
        assert challenges(refused.headers["WWW-Authenticate"])
        assert usdc_transfers(node, other.address) == []
        await assert_invariants(gateway)


async def test_anonymous_quotes_draw_on_the_clients_rate_limit(
    make_settings: SettingsFactory, chains: dict[str, AnvilNode], sim: CreateOSSimulator
) -> None:
    """A quote without wallet headers costs a CreateOS name check: the client IP's budget
    bounds them like any other request, before the name is checked."""
    settings = protocol_settings(make_settings, chains, rate_limit_requests=3)
    async with running_gateway(settings) as gateway:
        answers = [
            await gateway.client.post("/agent/deploy", json=deploy_body(f"anon-{i}"))
            for i in range(5)
        ]
    assert [a.status_code for a in answers] == [402, 402, 402, 429, 429]
    checks = [r for r in sim.requests if r.path.endswith("/available-unique-name")]
    assert len(checks) == 3


async def test_anonymous_quotes_of_one_name_ask_createos_once_and_the_paid_retry_again(
    gw: Gateway, chains: dict[str, AnvilNode], sim: CreateOSSimulator
) -> None:
    """Quotes without wallet headers reuse CreateOS's recent answer about the name, as a
    wallet's do (``upstream.quote_name_seconds``); the stock client's paid request asks again."""

    def name_checks() -> int:
        return sum(1 for r in sim.requests if r.path.endswith("/available-unique-name"))

    for _ in range(3):
        quoted = await gw.client.post("/agent/deploy", json=deploy_body("anon-again"))
        assert quoted.status_code == 402, quoted.text
    assert name_checks() == 1
    client, _ = x402_client(gw, gasless_payer(chains["arbitrum"]))
    async with client:
        paid = await client.post("/agent/deploy", json=deploy_body("anon-again"))
    assert paid.status_code == 200, paid.text
    # The stock client's first, unpaid request is a quote too (remembered); its paid retry asks.
    assert name_checks() == 2


async def test_a_stock_client_redeploys_its_own_project_and_is_refused_anothers(
    gw: Gateway, chains: dict[str, AnvilNode], sim: CreateOSSimulator
) -> None:
    """Without wallet headers the payer is the wallet on the redeploy route too: the owner
    redeploys by paying; another payer's credential is a 403 before anything is sent."""
    from tests.deploy_support import files_upload

    node = chains["arbitrum"]
    owner, stranger = gasless_payer(node), gasless_payer(node)
    client, _ = x402_client(gw, owner)
    async with client:
        first = await client.post("/agent/deploy", json=deploy_body("redeploy-me"))
        assert first.status_code == 200, first.text
        project_id = first.json()["projectId"]
        quoted = await gw.client.post(
            f"/agent/projects/{project_id}/deploy", json={"upload": files_upload()}
        )
        assert quoted.status_code == 402 and "PAYMENT-REQUIRED" in quoted.headers
        again = await client.post(
            f"/agent/projects/{project_id}/deploy", json={"upload": files_upload()}
        )
    assert again.status_code == 200, again.text
    assert len(usdc_transfers(node, owner.address)) == 2

    client, _ = x402_client(gw, stranger)
    nonce_before = settler_nonce(node)
    async with client:
        refused = await client.post(
            f"/agent/projects/{project_id}/deploy", json={"upload": files_upload()}
        )
    assert refused.status_code == 403, refused.text
    assert usdc_transfers(node, stranger.address) == []
    assert settler_nonce(node) == nonce_before
    unknown = await gw.client.post(
        "/agent/projects/no-such-project/deploy", json={"upload": files_upload()}
    )
    assert unknown.status_code == 404
