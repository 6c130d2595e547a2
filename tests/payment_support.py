"""Fixtures and helpers of the payment tests (docs/PAYMENTS.md section 2) on real anvil chains and
Redis.

``pgw`` is the in-process gateway on both anvil chains. Its teardown proves the two invariants
every payment test must leave behind, whatever it did:

- every wallet the ledger knows passes ``Ledger.check_consistency`` (sum of entries == balance);
- every tx claim in Redis is ``used`` and has a payment record (credited or reversed), and every
  payment record's tx is claimed ``used``: no claim is left pending and none is used without
  its credit.

The ``pgw`` fixture lives in tests/payments/conftest.py.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx
from eth_abi.abi import encode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.abi import function_signature_to_4byte_selector

from devstack.anvil import CANONICAL_TOKENS, AnvilNode
from gateway.client.signing import auth_headers
from gateway.config import Settings
from gateway.ledger import Ledger
from gateway.store import Store
from gateway.types import Clock, system_clock
from tests.support import PAY_TO, Gateway, SettingsFactory, raw_redis

ARBITRUM, BASE = 42161, 8453
CHAIN_IDS = {"arbitrum": ARBITRUM, "base": BASE}


def token_address(node: AnvilNode, key: str) -> str:
    return CANONICAL_TOKENS[node.chain_id][key]


def calldata(signature: str, types: list[str], args: list[Any]) -> str:
    return "0x" + (function_signature_to_4byte_selector(signature) + encode(types, args)).hex()


def new_payer() -> LocalAccount:
    account: LocalAccount = Account.create()
    return account


def pay(
    node: AnvilNode, payer: LocalAccount, amount: int, *, token: str = "usdc", to: str = PAY_TO
) -> str:
    """Mint ``amount`` base units of ``token`` to ``payer`` and transfer them to ``to``."""
    address = token_address(node, token)
    node.mint(address, payer.address, amount)
    return node.transfer(address, payer.address, to, amount, impersonate=True)


def send_as(node: AnvilNode, sender: str, to: str, data: str) -> str:
    """A transaction from any address (impersonated), mined; returns its hash."""
    return node.send_transaction(sender, to, data, impersonate=True)


def with_chain(settings: Settings, name: str, **changes: Any) -> Settings:
    """``settings`` with fields of one chain's config replaced (finality, confirmations, RPC)."""
    chains = dict(settings.chains)
    chains[name] = dataclasses.replace(chains[name], **changes)
    return settings.with_overrides(chains=chains)


def payment_settings(make_settings: SettingsFactory, nodes: Any, **overrides: Any) -> Settings:
    """Local settings on ``nodes``; tests make many requests from one wallet, and the
    background re-check stays out of the way (tests call ``run_once`` themselves)."""
    values: dict[str, Any] = {"rate_limit_requests": 10_000, "recheck_interval_seconds": 3600.0}
    values.update(overrides)
    return make_settings(nodes, **values)


async def topup(
    gateway: Gateway,
    account: LocalAccount,
    tx: str,
    *,
    chain: str | None = None,
    token: str | None = None,
    clock: Clock = system_clock,
) -> httpx.Response:
    """``POST /agent/credits/topup`` signed by ``account`` (``clock`` signs the timestamp)."""
    extra = {"X-Payment-Tx": tx}
    if chain is not None:
        extra["X-Payment-Chain"] = chain
    if token is not None:
        extra["X-Payment-Token"] = token
    headers = auth_headers(account, clock=clock)
    headers.update(extra)
    return await gateway.client.post("/agent/credits/topup", headers=headers)


async def assert_invariants(gateway: Gateway) -> None:
    """The two invariants of the module docstring, over every key of this test's prefix."""
    await assert_store_invariants(gateway.services.store, gateway.services.ledger)


async def assert_store_invariants(store: Store, ledger: Ledger) -> None:
    """``assert_invariants`` for a store and ledger built by the test (no in-process app)."""
    for wallet in await ledger.wallets():
        report = await ledger.check_consistency(wallet)
        assert report.ok, report
    # Claims and payment records live in each payer's slot: {prefix}{w:<payer>}:claim:<ref>.
    prefix = store.keys.prefix
    claims: dict[str, str] = {}
    redis = raw_redis(store)
    async for key in redis.scan_iter(match=f"{prefix}{{w:*}}:claim:*"):
        claims[str(key)[len(prefix) :].replace(":claim:", ":", 1)] = str(await redis.get(key))
    records: dict[str, dict[str, str]] = {}
    async for key in redis.scan_iter(match=f"{prefix}{{w:*}}:payment:*"):
        records[str(key)[len(prefix) :].replace(":payment:", ":", 1)] = await store.hash(key)
    for ref, state in claims.items():
        assert state == "used", f"claim {ref} left {state!r}"
        assert ref in records, f"claim {ref} used without a payment record"
        assert records[ref]["status"] in ("credited", "reversed"), records[ref]
    for ref in records:
        assert claims.get(ref) == "used", f"payment {ref} recorded without its claim"


async def assert_rejected(
    gateway: Gateway,
    response: httpx.Response,
    *,
    wallet: str,
    chain_id: int,
    tx: str,
    reason: str,
) -> dict[str, Any]:
    """A 402 "Payment verification failed" with ``reason``, no quote, nothing credited, and
    the claim released (the tx is claimable again)."""
    assert response.status_code == 402, response.text
    body: dict[str, Any] = response.json()
    assert body["error"] == "Payment verification failed"
    assert body["reason"] == reason
    assert "amount_usd" not in body and "pay_to" not in body  # never a fresh quote
    assert await gateway.balance(wallet) == 0
    assert await gateway.services.ledger.entries(wallet) == []
    assert await gateway.services.ledger.claim_state(chain_id, tx.lower(), wallet) is None
    return body
