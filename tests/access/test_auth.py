"""docs/PROTOCOL.md section 2: every 401 rule, against the gateway with real Redis and anvil."""

from __future__ import annotations

import time

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from devstack.anvil import AnvilNode
from gateway.access.auth import parse_auth_headers, recover_signer, signing_message
from gateway.client.signing import auth_headers
from tests.support import running_gateway

ROUTE = "/agent/credits"


async def get(gateway: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    return await gateway.get(ROUTE, headers=headers)


async def test_valid_signature_is_accepted(gateway: httpx.AsyncClient, agent: LocalAccount) -> None:
    response = await get(gateway, auth_headers(agent))
    assert response.status_code == 200, response.text
    assert response.json()["wallet"] == agent.address


async def test_lowercase_wallet_header_is_accepted_and_checksummed_out(
    gateway: httpx.AsyncClient, agent: LocalAccount
) -> None:
    response = await get(gateway, auth_headers(agent, address=agent.address.lower()))
    assert response.status_code == 200, response.text
    assert response.json()["wallet"] == agent.address


@pytest.mark.parametrize("missing", ["X-Wallet-Address", "X-Signature", "X-Timestamp", "X-Nonce"])
async def test_missing_header(
    gateway: httpx.AsyncClient, agent: LocalAccount, missing: str
) -> None:
    headers = auth_headers(agent)
    del headers[missing]
    response = await get(gateway, headers)
    assert response.status_code == 401
    assert response.json() == {"error": f"Missing {missing} header", "code": "missing_header"}


@pytest.mark.parametrize(
    ("header", "value", "words"),
    [
        ("X-Signature", "0xzz" + "00" * 64, "X-Signature"),
        ("X-Signature", "0x" + "00" * 64, "X-Signature"),  # 64 bytes: too short
        ("X-Signature", "00" * 65, "X-Signature"),  # no 0x
        ("X-Wallet-Address", "0x1234", "X-Wallet-Address"),
        ("X-Wallet-Address", "0x" + "g" * 40, "X-Wallet-Address"),
        ("X-Timestamp", "17e11", "X-Timestamp"),
        ("X-Timestamp", "-5", "X-Timestamp"),
        ("X-Nonce", "short", "X-Nonce"),
        ("X-Nonce", "has space in it", "X-Nonce"),
        ("X-Nonce", "n" * 129, "X-Nonce"),
    ],
)
async def test_malformed_header(
    gateway: httpx.AsyncClient, agent: LocalAccount, header: str, value: str, words: str
) -> None:
    headers = auth_headers(agent)
    headers[header] = value
    response = await get(gateway, headers)
    assert response.status_code == 401
    body = response.json()
    assert body["code"] == "malformed_header"
    assert words in body["error"]


async def test_wrong_signer(gateway: httpx.AsyncClient, agent: LocalAccount) -> None:
    other: LocalAccount = Account.create()
    headers = auth_headers(other, address=agent.address)  # other signs agent's message
    response = await get(gateway, headers)
    assert response.status_code == 401
    assert response.json()["code"] == "bad_signature"


async def test_signature_over_another_message(
    gateway: httpx.AsyncClient, agent: LocalAccount
) -> None:
    headers = auth_headers(agent)
    headers["X-Nonce"] = headers["X-Nonce"] + "x"  # the signature covered another nonce
    response = await get(gateway, headers)
    assert response.status_code == 401
    assert response.json()["code"] == "bad_signature"


async def test_expired_timestamp(gateway: httpx.AsyncClient, agent: LocalAccount) -> None:
    stale = int((time.time() - 61) * 1000)
    response = await get(gateway, auth_headers(agent, timestamp_ms=stale))
    assert response.status_code == 401
    assert response.json()["code"] == "timestamp_expired"


async def test_future_timestamp(gateway: httpx.AsyncClient, agent: LocalAccount) -> None:
    future = int((time.time() + 61) * 1000)
    response = await get(gateway, auth_headers(agent, timestamp_ms=future))
    assert response.status_code == 401
    assert response.json()["code"] == "timestamp_in_future"


async def test_timestamp_inside_window_is_accepted(
    gateway: httpx.AsyncClient, agent: LocalAccount
) -> None:
    slightly_old = int((time.time() - 50) * 1000)
    response = await get(gateway, auth_headers(agent, timestamp_ms=slightly_old))
    assert response.status_code == 200


async def test_replayed_nonce(gateway: httpx.AsyncClient, agent: LocalAccount) -> None:
    headers = auth_headers(agent)
    assert (await get(gateway, headers)).status_code == 200
    replay = await get(gateway, headers)
    assert replay.status_code == 401
    assert replay.json()["code"] == "nonce_reused"
    # A fresh signature with the same nonce and a new timestamp is still a replay.
    again = auth_headers(
        agent, nonce=headers["X-Nonce"], timestamp_ms=int(headers["X-Timestamp"]) + 1
    )
    assert (await get(gateway, again)).json()["code"] == "nonce_reused"


async def test_nonce_of_another_wallet_is_independent(
    gateway: httpx.AsyncClient, agent: LocalAccount
) -> None:
    other: LocalAccount = Account.create()
    nonce = "shared-nonce-123"
    assert (await get(gateway, auth_headers(agent, nonce=nonce))).status_code == 200
    assert (await get(gateway, auth_headers(other, nonce=nonce))).status_code == 200


async def test_bad_signature_does_not_burn_the_nonce(
    gateway: httpx.AsyncClient, agent: LocalAccount
) -> None:
    stranger: LocalAccount = Account.create()
    nonce = "victim-nonce-0001"
    forged = auth_headers(stranger, address=agent.address, nonce=nonce)
    assert (await get(gateway, forged)).status_code == 401
    assert (await get(gateway, auth_headers(agent, nonce=nonce))).status_code == 200


async def test_high_s_twin_is_still_a_replay(
    gateway: httpx.AsyncClient, agent: LocalAccount
) -> None:
    """The malleable twin of a signature recovers to the same wallet: the nonce blocks it."""
    headers = auth_headers(agent)
    assert (await get(gateway, headers)).status_code == 200
    sig = bytes.fromhex(headers["X-Signature"][2:])
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    r, s, v = sig[:32], int.from_bytes(sig[32:64], "big"), sig[64]
    twin = r + (n - s).to_bytes(32, "big") + bytes([55 - v])  # 27 <-> 28
    headers["X-Signature"] = "0x" + twin.hex()
    response = await get(gateway, headers)
    assert response.status_code == 401
    assert response.json()["code"] in {"nonce_reused", "bad_signature"}


async def test_eip1271_contract_wallet_accepted(
    make_settings, chains: dict[str, AnvilNode], agent: LocalAccount
) -> None:
    arbitrum = chains["arbitrum"]
    wallet = arbitrum.deploy("AlwaysValidWallet")
    async with running_gateway(make_settings(chains)) as running:
        # Any key signs; the contract on the default chain vouches for it.
        gateway = running.client
        response = await get(gateway, auth_headers(agent, address=wallet))
        assert response.status_code == 200, response.text
        assert response.json()["wallet"].lower() == wallet.lower()


async def test_eip1271_contract_wallet_rejected(
    make_settings, chains: dict[str, AnvilNode], agent: LocalAccount
) -> None:
    wallet = chains["arbitrum"].deploy("NeverValidWallet")
    async with running_gateway(make_settings(chains)) as running:
        gateway = running.client
        response = await get(gateway, auth_headers(agent, address=wallet))
        assert response.status_code == 401
        assert response.json()["code"] == "bad_signature"


async def test_eip1271_only_on_the_default_chain(
    make_settings, chains: dict[str, AnvilNode], agent: LocalAccount
) -> None:
    """A contract that vouches on base (not the default chain) does not authenticate."""
    wallet = chains["base"].deploy("AlwaysValidWallet")
    async with running_gateway(make_settings(chains)) as running:
        gateway = running.client
        response = await get(gateway, auth_headers(agent, address=wallet))
        assert response.status_code == 401


async def test_erc6492_signature_is_refused_by_name(
    gateway: httpx.AsyncClient, agent: LocalAccount
) -> None:
    headers = auth_headers(agent)
    headers["X-Signature"] = "0x" + "11" * 100 + "6492" * 16
    response = await get(gateway, headers)
    assert response.status_code == 401
    assert response.json()["code"] == "erc6492_unsupported"


def test_signing_matches_eth_account_sign_message() -> None:
    """What eth-account (and viem's signMessage, the same EIP-191 bytes) produce recovers."""
    account: LocalAccount = Account.from_key("0x" + "11" * 32)
    message = signing_message(account.address, 1_700_000_000_000, "abcdefgh")
    signature = account.sign_message(encode_defunct(text=message)).signature
    assert recover_signer(message, bytes(signature)) == account.address.lower()


def test_viem_sign_message_vector() -> None:
    """A fixed vector: anvil account #0 signing 'hello world' with viem's signMessage gives
    this well-known signature (the same bytes as eth-account; EIP-191 version 0x45)."""
    key = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
    account: LocalAccount = Account.from_key(key)
    signature = bytes(account.sign_message(encode_defunct(text="hello world")).signature)
    assert recover_signer("hello world", signature) == account.address.lower()
    # v is 27/28 as viem emits it
    assert signature[64] in (27, 28)


def test_v_as_0_or_1_is_accepted() -> None:
    account: LocalAccount = Account.create()
    message = signing_message(account.address, 1, "abcdefgh")
    signature = bytearray(account.sign_message(encode_defunct(text=message)).signature)
    signature[64] -= 27
    assert recover_signer(message, bytes(signature)) == account.address.lower()


def test_message_uses_raw_header_text() -> None:
    headers = {
        "x-wallet-address": "0x" + "aB" * 20,
        "x-signature": "0x" + "00" * 65,
        "x-timestamp": "0001700000000000",
        "x-nonce": "nonce-123",
    }
    _, message = parse_auth_headers(headers)
    assert message == "0x" + "aB" * 20 + ":0001700000000000:nonce-123"
