"""Gasless settlement (``gateway.payments.settle``) on real anvil chains and Redis: EIP-3009
authorizations verified before anything moves, settled once by the settler key, credited by
the pushed-payment rules (docs/PAYMENTS.md section 7).

"Two processes" here are two in-process gateways: each has its own Redis connection, chain
clients and settler; what they share is what two ``serve`` processes share (Redis, the chain).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from devstack.anvil import ANVIL_ACCOUNTS, AnvilNode
from devstack.clock import ManualClock
from gateway.config import ChainConfig, Settings, TokenConfig
from gateway.errors import Conflict, PaymentRequired
from gateway.payments.authorization import (
    TRANSFER_WITH_AUTHORIZATION_FIELDS,
    Authorization,
    transfer_calldata,
)
from gateway.payments.service import PaymentCredited
from gateway.payments.settle import Busy, Claimed, Recorded, SettlementJournal, Settler
from gateway.types import Wallet
from tests.payment_support import assert_invariants, payment_settings, token_address
from tests.support import PAY_TO, Gateway, SettingsFactory, running_gateway

SETTLER, SETTLER_KEY = ANVIL_ACCOUNTS[7]
STRANGER = ANVIL_ACCOUNTS[8][0]
TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
PRICE = 1_000_000  # base units the tests ask an authorization to cover


@dataclass
class Side:
    """One gateway "process": its services and its settler."""

    gateway: Gateway
    settler: Settler
    journal: SettlementJournal


@contextlib.asynccontextmanager
async def side(settings: Settings, clock: Any = time.time) -> AsyncIterator[Side]:
    async with running_gateway(settings, clock=clock) as gateway:
        services = gateway.services
        journal = SettlementJournal(
            services.store, lease_seconds=settings.settle_lease_seconds, clock=services.clock
        )
        readers = {name: services.chains.get(name) for name in settings.chains}
        settler = Settler(settings, journal, readers, services.payments, clock=services.clock)
        yield Side(gateway, settler, journal)
        await assert_invariants(gateway)


@pytest.fixture
def settings(make_settings: SettingsFactory, chains: dict[str, AnvilNode]) -> Settings:
    return payment_settings(make_settings, chains, settler_key=SETTLER_KEY)


@pytest.fixture
async def one(settings: Settings) -> AsyncIterator[Side]:
    async with side(settings) as s:
        yield s


@pytest.fixture
async def two(settings: Settings) -> AsyncIterator[Side]:
    async with side(settings) as s:
        yield s


def chain_of(settings: Settings, name: str) -> tuple[ChainConfig, TokenConfig]:
    chain = settings.chains[name]
    return chain, chain.tokens["usdc"]


def gasless_payer(node: AnvilNode, units: int = 5_000_000) -> LocalAccount:
    """A fresh wallet holding USDC and no ETH at all."""
    account: LocalAccount = Account.create()
    node.mint(token_address(node, "usdc"), account.address, units)
    assert int(node.rpc("eth_getBalance", [account.address, "latest"]), 16) == 0
    return account


def sign(
    payer: LocalAccount,
    node: AnvilNode,
    *,
    chain_id: int | None = None,
    key: str | None = None,
    **overrides: Any,
) -> Authorization:
    message: dict[str, Any] = {
        "from": payer.address,
        "to": PAY_TO,
        "value": PRICE,
        # A wide window: other tests move the shared chains' clock days ahead of the wall
        # clock, and the token checks the window against block.timestamp.
        "validAfter": 0,
        "validBefore": int(time.time()) + 365 * 86400,
        "nonce": secrets.token_bytes(32),
    }
    message.update(overrides)
    domain = {
        "name": "USD Coin",
        "version": "2",
        "chainId": chain_id or node.chain_id,
        "verifyingContract": token_address(node, "usdc"),
    }
    types = {"TransferWithAuthorization": TRANSFER_WITH_AUTHORIZATION_FIELDS}
    signed = Account.sign_typed_data(key or payer.key, domain, types, message)
    return Authorization(
        payer=message["from"],
        to=message["to"],
        value=message["value"],
        valid_after=message["validAfter"],
        valid_before=message["validBefore"],
        nonce=message["nonce"],
        signature=bytes(signed.signature),
    )


def chain_nonce(node: AnvilNode, address: str = SETTLER) -> int:
    return int(node.rpc("eth_getTransactionCount", [address, "pending"]), 16)


def usdc_transfers(node: AnvilNode, sender: str, to: str = PAY_TO) -> list[dict[str, Any]]:
    """Every USDC Transfer log from ``sender`` to ``to`` on the chain."""
    pad = "0x" + "0" * 24
    logs: list[dict[str, Any]] = node.rpc(
        "eth_getLogs",
        [
            {
                "address": token_address(node, "usdc"),
                "fromBlock": "0x0",
                "toBlock": "latest",
                "topics": [
                    TRANSFER_TOPIC,
                    pad + sender[2:].lower(),
                    pad + to[2:].lower(),
                ],
            }
        ],
    )
    return logs


async def settle(s: Side, authorization: Authorization, name: str = "arbitrum", **kw: Any) -> Any:
    chain, token = chain_of(s.gateway.settings, name)
    return await s.settler.settle(
        authorization, chain=chain, token=token, min_units=kw.pop("min_units", PRICE), **kw
    )


# -- settled once, gasless, credited by the pushed-payment rules ---------------------------


@pytest.mark.parametrize("name", ["arbitrum", "base"])
async def test_authorization_is_settled_by_the_gateway_and_credited_once(
    one: Side, chains: dict[str, AnvilNode], name: str
) -> None:
    node = chains[name]
    payer = gasless_payer(node)
    authorization = sign(payer, node)
    nonce_before = chain_nonce(node)

    credited = await settle(one, authorization, name)

    assert isinstance(credited, PaymentCredited)
    assert credited.chain == name and credited.token == "usdc"
    assert credited.amount_micro == PRICE and credited.balance_micro == PRICE
    assert await one.gateway.balance(payer.address) == PRICE
    assert int(node.rpc("eth_getBalance", [payer.address, "latest"]), 16) == 0
    [transfer] = usdc_transfers(node, payer.address)
    assert transfer["transactionHash"] == credited.tx_hash
    tx = node.rpc("eth_getTransactionByHash", [credited.tx_hash])
    assert tx["from"].lower() == SETTLER.lower()
    assert chain_nonce(node) == nonce_before + 1
    chain, token = chain_of(one.gateway.settings, name)
    record = await one.journal.record_of(chain.chain_id, token, authorization)
    assert record["state"] == "settled" and record["tx"] == credited.tx_hash

    # The same authorization again: refused, nothing sent, nothing credited.
    with pytest.raises(Conflict) as again:
        await settle(one, authorization, name)
    assert again.value.fields["code"] == "payment_already_processed"
    assert chain_nonce(node) == nonce_before + 1
    assert len(usdc_transfers(node, payer.address)) == 1
    assert await one.gateway.balance(payer.address) == PRICE


async def test_value_above_the_quote_is_credited_in_full(
    one: Side, chains: dict[str, AnvilNode]
) -> None:
    payer = gasless_payer(chains["arbitrum"])
    credited = await settle(one, sign(payer, chains["arbitrum"], value=2_500_000))
    assert credited.amount_micro == 2_500_000


async def test_contract_wallet_payer_is_checked_by_eip1271_and_settled_with_bytes_form(
    one: Side, chains: dict[str, AnvilNode]
) -> None:
    node = chains["arbitrum"]
    wallet = node.deploy("AlwaysValidWallet")
    node.mint(token_address(node, "usdc"), wallet, PRICE)
    authorization = Authorization(
        payer=wallet,
        to=PAY_TO,
        value=PRICE,
        valid_after=0,
        valid_before=int(time.time()) + 365 * 86400,
        nonce=secrets.token_bytes(32),
        signature=b"\x01" * 70,  # not 65 bytes: only the bytes form carries it
    )
    assert (
        transfer_calldata(authorization)[:4]
        != transfer_calldata(dataclasses.replace(authorization, signature=b"\x01" * 65))[:4]
    )

    credited = await settle(one, authorization)

    assert credited.amount_micro == PRICE
    assert await one.gateway.balance(wallet) == PRICE
    assert len(usdc_transfers(node, wallet)) == 1


# -- refused before anything moves ----------------------------------------------------------


def _refusals(node: AnvilNode, payer: LocalAccount) -> dict[str, tuple[Authorization, str]]:
    now = int(time.time())
    good = sign(payer, node)
    return {
        "expired": (sign(payer, node, validBefore=now - 1), "expired"),
        "too-little-time-left": (sign(payer, node, validBefore=now + 5), "expired"),
        "not-yet-valid": (sign(payer, node, validAfter=now + 300), "not_yet_valid"),
        "underpaying": (sign(payer, node, value=PRICE - 1), "underpaid"),
        "wrong-recipient": (sign(payer, node, to=STRANGER), "wrong_recipient"),
        "wrong-chain": (sign(payer, node, chain_id=8453), "bad_signature"),
        "bad-signature": (sign(payer, node, key=ANVIL_ACCOUNTS[6][1]), "bad_signature"),
        "tampered-value": (
            dataclasses.replace(good, value=good.value + 1),
            "bad_signature",
        ),
        "tampered-nonce": (
            dataclasses.replace(good, nonce=secrets.token_bytes(32)),
            "bad_signature",
        ),
        "truncated-signature": (
            dataclasses.replace(good, signature=good.signature[:64]),
            "bad_signature",
        ),
        "insufficient-funds": (sign(payer, node, value=50_000_000), "insufficient_funds"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "expired",
        "too-little-time-left",
        "not-yet-valid",
        "underpaying",
        "wrong-recipient",
        "wrong-chain",
        "bad-signature",
        "tampered-value",
        "tampered-nonce",
        "truncated-signature",
        "insufficient-funds",
    ],
)
async def test_bad_authorization_is_refused_with_nothing_sent(
    one: Side, chains: dict[str, AnvilNode], case: str
) -> None:
    node = chains["arbitrum"]
    payer = gasless_payer(node)
    authorization, reason = _refusals(node, payer)[case]
    nonce_before = chain_nonce(node)

    with pytest.raises(PaymentRequired) as refused:
        await settle(one, authorization)

    assert refused.value.fields["reason"] == reason
    assert refused.value.fields["settlement"] == "refused"
    assert chain_nonce(node) == nonce_before
    assert usdc_transfers(node, payer.address) == []
    assert await one.gateway.balance(payer.address) == 0
    chain, token = chain_of(one.gateway.settings, "arbitrum")
    assert await one.journal.record_of(chain.chain_id, token, authorization) == {}


async def test_refused_for_missing_funds_can_be_sent_again_once_funded(
    one: Side, chains: dict[str, AnvilNode]
) -> None:
    node = chains["arbitrum"]
    payer = gasless_payer(node, units=PRICE - 1)
    authorization = sign(payer, node)
    with pytest.raises(PaymentRequired) as refused:
        await settle(one, authorization)
    assert refused.value.fields["reason"] == "insufficient_funds"
    node.mint(token_address(node, "usdc"), payer.address, 1)
    assert (await settle(one, authorization)).amount_micro == PRICE


async def test_payer_must_be_the_authenticated_wallet(
    one: Side, chains: dict[str, AnvilNode]
) -> None:
    node = chains["arbitrum"]
    payer = gasless_payer(node)
    with pytest.raises(PaymentRequired) as refused:
        await settle(one, sign(payer, node), wallet=Wallet(STRANGER))
    assert refused.value.fields["reason"] == "payer_mismatch"
    credited = await settle(one, sign(payer, node), wallet=Wallet(payer.address))
    assert credited.amount_micro == PRICE


async def test_contract_wallet_that_refuses_the_signature_is_refused(
    one: Side, chains: dict[str, AnvilNode]
) -> None:
    node = chains["arbitrum"]
    wallet = node.deploy("NeverValidWallet")
    node.mint(token_address(node, "usdc"), wallet, PRICE)
    payer = gasless_payer(node)
    signed = sign(payer, node)
    authorization = dataclasses.replace(signed, payer=wallet)
    nonce_before = chain_nonce(node)
    with pytest.raises(PaymentRequired) as refused:
        await settle(one, authorization)
    assert refused.value.fields["reason"] == "bad_signature"
    assert chain_nonce(node) == nonce_before


async def test_token_without_eip3009_is_refused(one: Side, chains: dict[str, AnvilNode]) -> None:
    node = chains["arbitrum"]
    payer = gasless_payer(node)
    chain = one.gateway.settings.chains["arbitrum"]
    with pytest.raises(PaymentRequired) as refused:
        await one.settler.settle(
            sign(payer, node), chain=chain, token=chain.tokens["usdt"], min_units=PRICE
        )
    assert refused.value.fields["reason"] == "token_not_gasless"


# -- exactly once across processes and crashes ---------------------------------------------


async def test_twenty_concurrent_submissions_through_two_processes_settle_and_credit_once(
    one: Side, two: Side, chains: dict[str, AnvilNode]
) -> None:
    node = chains["arbitrum"]
    payer = gasless_payer(node)
    authorization = sign(payer, node)
    nonce_before = chain_nonce(node)

    outcomes = await asyncio.gather(
        *(settle(one if i % 2 else two, authorization) for i in range(20)),
        return_exceptions=True,
    )

    credited = [o for o in outcomes if isinstance(o, PaymentCredited)]
    assert len(credited) == 1, outcomes
    for other in outcomes:
        if isinstance(other, PaymentCredited):
            continue
        assert isinstance(other, PaymentRequired | Conflict), other
        if isinstance(other, PaymentRequired):
            assert other.fields["payment_status"] == "pending", other.fields
            assert "reason" not in other.fields
    assert chain_nonce(node) == nonce_before + 1
    assert len(usdc_transfers(node, payer.address)) == 1
    assert await one.gateway.balance(payer.address) == PRICE
    with pytest.raises(Conflict):
        await settle(two, authorization)


async def test_two_processes_settling_different_authorizations_never_share_a_nonce(
    one: Side, two: Side, chains: dict[str, AnvilNode]
) -> None:
    node = chains["base"]
    payers = [gasless_payer(node) for _ in range(6)]
    nonce_before = chain_nonce(node)

    credited = await asyncio.gather(
        *(settle(one if i % 2 else two, sign(p, node), "base") for i, p in enumerate(payers))
    )

    assert len({c.tx_hash for c in credited}) == 6
    nonces = sorted(
        int(node.rpc("eth_getTransactionByHash", [c.tx_hash])["nonce"], 16) for c in credited
    )
    assert nonces == list(range(nonce_before, nonce_before + 6))
    for payer in payers:
        assert await one.gateway.balance(payer.address) == PRICE


async def test_process_gone_after_broadcast_is_reconciled_by_another_without_a_second_tx(
    one: Side, two: Side, chains: dict[str, AnvilNode]
) -> None:
    node = chains["arbitrum"]
    payer = gasless_payer(node)
    authorization = sign(payer, node)
    chain, token = chain_of(one.gateway.settings, "arbitrum")
    nonce_before = chain_nonce(node)
    node.set_automine(False)

    first = asyncio.create_task(settle(one, authorization))
    deadline = time.monotonic() + 10
    while (
        not (record := await one.journal.record_of(chain.chain_id, token, authorization)).get("tx")
        or node.rpc("eth_getTransactionByHash", [record["tx"]]) is None
    ):
        assert time.monotonic() < deadline, "the settlement was never broadcast"
        await asyncio.sleep(0.05)
    first.cancel()  # the process dies after broadcasting, before the receipt and the credit
    with contextlib.suppress(asyncio.CancelledError):
        await first
    assert await one.gateway.balance(payer.address) == 0

    retried = asyncio.create_task(settle(two, authorization))
    await asyncio.sleep(0.3)
    node.mine(1)
    credited = await retried

    assert credited.tx_hash == record["tx"]
    assert credited.amount_micro == PRICE
    assert chain_nonce(node) == nonce_before + 1
    assert len(usdc_transfers(node, payer.address)) == 1
    assert await two.gateway.balance(payer.address) == PRICE


async def test_recorded_but_never_sent_tx_is_sent_by_the_retry_as_the_same_bytes(
    one: Side, two: Side, chains: dict[str, AnvilNode]
) -> None:
    """A process that died between recording the signed tx and sending it: the retry sends
    exactly the recorded bytes (same hash, same settler nonce)."""
    node = chains["arbitrum"]
    payer = gasless_payer(node)
    authorization = sign(payer, node)
    chain, token = chain_of(one.gateway.settings, "arbitrum")
    nonce_before = chain_nonce(node)
    journal = one.journal
    # Steps 3 and 5 as the settler takes them, stopping before the send.
    claim = await journal.claim(chain.chain_id, token, authorization)
    signed = Account.from_key(SETTLER_KEY).sign_transaction(
        {
            "type": 2,
            "chainId": chain.chain_id,
            "nonce": await journal.next_settler_nonce(chain.chain_id, SETTLER, nonce_before),
            "to": token.address,
            "value": 0,
            "data": transfer_calldata(authorization),
            "gas": 200_000,
            "maxFeePerGas": 10**10,
            "maxPriorityFeePerGas": 10**9,
        }
    )
    tx_hash = "0x" + bytes(signed.hash).hex()
    assert await journal.record(
        chain.chain_id,
        token,
        authorization,
        claim.holder,  # type: ignore[union-attr]
        tx=tx_hash,
        raw=bytes(signed.raw_transaction),
        settler_nonce=nonce_before,
    )
    assert node.rpc("eth_getTransactionByHash", [tx_hash]) is None

    credited = await settle(two, authorization)

    assert credited.tx_hash == tx_hash
    assert chain_nonce(node) == nonce_before + 1
    assert await two.gateway.balance(payer.address) == PRICE


async def test_authorization_settled_first_by_a_stranger_credits_its_payer_once(
    one: Side, chains: dict[str, AnvilNode]
) -> None:
    node = chains["arbitrum"]
    payer = gasless_payer(node)
    authorization = sign(payer, node)
    stranger_tx = node.send_transaction(
        STRANGER, token_address(node, "usdc"), "0x" + transfer_calldata(authorization).hex()
    )
    assert int(node.receipt(stranger_tx)["status"], 16) == 1  # type: ignore[index]
    nonce_before = chain_nonce(node)

    credited = await settle(one, authorization)

    assert credited.tx_hash == stranger_tx
    assert credited.amount_micro == PRICE
    assert chain_nonce(node) == nonce_before  # the settler sent nothing
    with pytest.raises(Conflict):
        await settle(one, authorization)
    assert await one.gateway.balance(payer.address) == PRICE


async def test_stranger_front_running_our_settlement_is_credited_instead(
    one: Side, chains: dict[str, AnvilNode]
) -> None:
    """Our tx and a stranger's with the same authorization in one block: the stranger pays
    more for gas, so ours reverts; the payer is still credited once, from the stranger's tx."""
    node = chains["arbitrum"]
    payer = gasless_payer(node)
    authorization = sign(payer, node)
    chain, token = chain_of(one.gateway.settings, "arbitrum")
    node.set_automine(False)
    ours = asyncio.create_task(settle(one, authorization))
    deadline = time.monotonic() + 10
    while not (await one.journal.record_of(chain.chain_id, token, authorization)).get("tx"):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # let it reach the node
    stranger_tx = node.rpc(
        "eth_sendTransaction",
        [
            {
                "from": STRANGER,
                "to": token.address,
                "data": "0x" + transfer_calldata(authorization).hex(),
                "gas": hex(200_000),
                "maxFeePerGas": hex(10**12),
                "maxPriorityFeePerGas": hex(10**11),
            }
        ],
    )
    node.mine(1)

    credited = await ours

    assert credited.tx_hash == stranger_tx
    record = await one.journal.record_of(chain.chain_id, token, authorization)
    assert record["state"] == "foreign" and record["credit_tx"] == stranger_tx
    assert record["tx"] != stranger_tx
    assert len(usdc_transfers(node, payer.address)) == 1
    assert await one.gateway.balance(payer.address) == PRICE


async def test_settlement_outlasting_the_wait_answers_pending_and_the_retry_completes(
    make_settings: SettingsFactory, chains: dict[str, AnvilNode]
) -> None:
    settings = payment_settings(
        make_settings, chains, settler_key=SETTLER_KEY, settle_wait_seconds=0.5
    )
    node = chains["arbitrum"]
    payer = gasless_payer(node)
    authorization = sign(payer, node)
    async with side(settings) as s:
        node.set_automine(False)
        with pytest.raises(PaymentRequired) as pending:
            await settle(s, authorization)
        assert pending.value.fields["payment_status"] == "pending"
        assert "reason" not in pending.value.fields
        assert pending.value.headers["Retry-After"] == str(settings.pending_retry_after_seconds)
        sent = pending.value.fields["tx"]
        node.mine(1)
        credited = await settle(s, authorization)
        assert credited.tx_hash == sent
        assert await s.gateway.balance(payer.address) == PRICE


async def test_a_dropped_settlement_is_re_sent_by_the_sweeper_and_credited_once(
    make_settings: SettingsFactory, chains: dict[str, AnvilNode]
) -> None:
    """The tx left the mempool (a node restart, eviction) and the payer never came back: the
    sweeper sends the same bytes again, so the settler's later nonces are not stuck behind
    it, and credits the payer; the payer's own retry then gets that credit as its answer,
    and a replay of the same authorization after that is refused."""
    settings = payment_settings(
        make_settings, chains, settler_key=SETTLER_KEY, settle_wait_seconds=0.3
    )
    node = chains["arbitrum"]
    payer = gasless_payer(node)
    authorization = sign(payer, node)
    async with side(settings) as s:
        node.set_automine(False)
        with pytest.raises(PaymentRequired) as pending:
            await settle(s, authorization)
        sent = pending.value.fields["tx"]
        nonce = chain_nonce(node)
        node.rpc("anvil_dropTransaction", [sent])
        assert chain_nonce(node) == nonce - 1  # gone from the pool
        node.set_automine(True)
        assert await s.settler.sweep(older_than_seconds=0) == 1  # re-sent, same hash
        assert node.rpc("eth_getTransactionReceipt", [sent]) is not None
        assert await s.settler.sweep(older_than_seconds=0) == 0  # mined: credited, done
        assert await s.gateway.balance(payer.address) == PRICE
        assert chain_nonce(node) == nonce

        credited = await settle(s, authorization)  # the payer's retry: its credit
        assert credited.tx_hash == sent and credited.amount_micro == PRICE
        with pytest.raises(Conflict):
            await settle(s, authorization)  # a replay
        assert await s.gateway.balance(payer.address) == PRICE
        assert len(usdc_transfers(node, payer.address)) == 1


async def test_an_underpriced_settlement_is_replaced_with_higher_fees_and_credited_once(
    make_settings: SettingsFactory, chains: dict[str, AnvilNode]
) -> None:
    """Base fees rose past what the settlement offered: it stays pending through the
    sweeper's re-sends, then is replaced (same nonce, higher fees); the replacement is mined,
    the payer credited once, and the payer's retry finds it among the record's hashes."""
    settings = payment_settings(
        make_settings, chains, settler_key=SETTLER_KEY, settle_wait_seconds=0.3
    )
    node = chains["arbitrum"]
    payer = gasless_payer(node)
    authorization = sign(payer, node)
    async with side(settings) as s:
        node.set_automine(False)
        with pytest.raises(PaymentRequired) as pending:
            await settle(s, authorization)
        first = pending.value.fields["tx"]
        offered = int(node.rpc("eth_getTransactionByHash", [first])["maxFeePerGas"], 16)
        node.rpc("anvil_setNextBlockBaseFeePerGas", [hex(offered * 4)])
        node.mine(1)  # the base fee is now above what the settlement pays: it cannot be mined
        assert node.rpc("eth_getTransactionReceipt", [first]) is None
        for _ in range(3):  # re-sent as it is while the sweeper still hopes
            await s.settler.sweep(older_than_seconds=0)
        record = await s.journal.record_of(chains_chain(s), chains_token(s), authorization)
        assert record["tx"] != first and record["txs"].split(",") == [first, record["tx"]]
        replacement = node.rpc("eth_getTransactionByHash", [record["tx"]])
        assert int(replacement["maxFeePerGas"], 16) > offered * 4
        node.set_automine(True)
        node.mine(1)
        assert node.rpc("eth_getTransactionReceipt", [record["tx"]]) is not None
        assert node.rpc("eth_getTransactionReceipt", [first]) is None  # same nonce: never

        credited = await settle(s, authorization)  # the payer's retry
        assert credited.tx_hash == record["tx"]
        assert await s.gateway.balance(payer.address) == PRICE
        assert len(usdc_transfers(node, payer.address)) == 1


def chains_chain(s: Side) -> int:
    return s.gateway.settings.chains["arbitrum"].chain_id


def chains_token(s: Side) -> TokenConfig:
    return s.gateway.settings.chains["arbitrum"].tokens["usdc"]


async def test_a_sent_settlement_retried_after_its_window_closed_is_credited_not_refused(
    make_settings: SettingsFactory, chains: dict[str, AnvilNode]
) -> None:
    """The settlement was sent in time; the payer's retry comes after validBefore (and after
    the price changed). Refusing it now would have the client sign a second payment for one
    that exists: the recorded tx is credited instead. A bad signature on the same payer and
    nonce is still refused."""
    settings = payment_settings(
        make_settings, chains, settler_key=SETTLER_KEY, settle_wait_seconds=0.3
    )
    node = chains["arbitrum"]
    payer = gasless_payer(node)
    latest = int(node.rpc("eth_getBlockByNumber", ["latest", False])["timestamp"], 16)
    lead = max(0, latest - int(time.time()))  # the shared chain's clock may run ahead
    authorization = sign(payer, node, validBefore=int(time.time()) + lead + 3600)
    clock = ManualClock(time.time())
    async with side(settings, clock) as s:
        node.set_automine(False)
        with pytest.raises(PaymentRequired) as pending:
            await settle(s, authorization)
        sent = pending.value.fields["tx"]
        node.mine(1)
        node.set_automine(True)
        clock.advance(lead + 3700)  # past validBefore for the gateway (the payment: ~1 h old)
        forged = dataclasses.replace(authorization, signature=b"\x01" * 65)
        with pytest.raises(PaymentRequired) as refused:
            await settle(s, forged)
        assert refused.value.fields["reason"] == "bad_signature"
        credited = await settle(s, authorization, min_units=PRICE * 10)
        assert credited.tx_hash == sent and credited.amount_micro == PRICE
        assert len(usdc_transfers(node, payer.address)) == 1


async def test_a_settlement_that_reverted_is_refused_for_good_without_a_fresh_offer(
    make_settings: SettingsFactory, chains: dict[str, AnvilNode]
) -> None:
    """Our tx was sent and mined after the authorization's validBefore (the token refuses
    it): the authorization is refused for good, marked as sent ("reverted", so the route
    offers no new challenge), and nothing is credited."""
    settings = payment_settings(
        make_settings, chains, settler_key=SETTLER_KEY, settle_wait_seconds=0.3
    )
    node = chains["arbitrum"]
    payer = gasless_payer(node)
    latest = int(node.rpc("eth_getBlockByNumber", ["latest", False])["timestamp"], 16)
    valid_before = max(latest, int(time.time())) + 120
    authorization = sign(payer, node, validBefore=valid_before)
    async with side(settings) as s:
        node.set_automine(False)
        with pytest.raises(PaymentRequired):
            await settle(s, authorization)
        node.rpc("evm_setNextBlockTimestamp", [hex(valid_before + 1)])
        node.mine(1)  # mined too late: the token reverts it
        node.set_automine(True)
        for _ in range(2):  # the retry finds the revert; a later one finds the record
            with pytest.raises(PaymentRequired) as refused:
                await settle(s, authorization)
            assert refused.value.fields["reason"] == "settlement_reverted"
            assert refused.value.fields["settlement"] == "reverted"
        assert await s.gateway.balance(payer.address) == 0
        assert usdc_transfers(node, payer.address) == []


async def test_claim_left_by_a_dead_holder_is_taken_over_and_the_old_holder_locked_out(
    settings: Settings, chains: dict[str, AnvilNode]
) -> None:
    now = [1_000.0]
    async with running_gateway(settings) as gateway:
        journal = SettlementJournal(gateway.services.store, lease_seconds=60, clock=lambda: now[0])
        payer = gasless_payer(chains["arbitrum"])
        authorization = sign(payer, chains["arbitrum"])
        chain, token = chain_of(settings, "arbitrum")
        first = await journal.claim(chain.chain_id, token, authorization)
        assert isinstance(first, Claimed)
        assert isinstance(await journal.claim(chain.chain_id, token, authorization), Busy)
        now[0] += 61
        second = await journal.claim(chain.chain_id, token, authorization)
        assert isinstance(second, Claimed)
        assert not await journal.record(
            chain.chain_id,
            token,
            authorization,
            first.holder,
            tx="0x" + "11" * 32,
            raw=b"\x01",
            settler_nonce=0,
        )
        assert await journal.record(
            chain.chain_id,
            token,
            authorization,
            second.holder,
            tx="0x" + "22" * 32,
            raw=b"\x02",
            settler_nonce=0,
        )
        now[0] += 10_000  # a recorded tx is never handed out again, however old
        again = await journal.claim(chain.chain_id, token, authorization)
        assert isinstance(again, Recorded)
        assert again.tx == "0x" + "22" * 32 and again.raw == b"\x02"
