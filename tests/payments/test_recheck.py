"""docs/PAYMENTS.md section 3: a payment credited at ``latest`` that a reorg removes is reversed
by the re-check once its height is finalized, with a ledger entry that says why; one that
survives is confirmed and left alone.

Reorgs rewrite history that snapshot/revert of the shared chains cannot undo reliably, so each
test here gets its own anvil for arbitrum (docs/CHAINS.md section 6)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account.signers.local import LocalAccount

from devstack.anvil import CANONICAL_TOKENS, AnvilNode, find_anvil_binary
from tests.payment_support import ARBITRUM, assert_invariants, payment_settings, topup
from tests.support import PAY_TO, USDC, SettingsFactory, running_gateway

USDC_ADDRESS = CANONICAL_TOKENS[ARBITRUM]["usdc"]


def send_usdc(node: AnvilNode, agent: LocalAccount, amount: int) -> str:
    return node.transfer(USDC_ADDRESS, agent.address, PAY_TO, amount, impersonate=True)


@pytest.fixture
def own_arbitrum(anvil_nodes: dict[str, AnvilNode], tmp_path: Path) -> Iterator[AnvilNode]:
    """A fresh arbitrum anvil (slots-in-an-epoch 1: finalized = latest - 2) for this test."""
    node = AnvilNode.start(ARBITRUM, log_dir=tmp_path, binary=find_anvil_binary())
    try:
        node.install_test_tokens()
        yield node
    finally:
        node.stop()


async def test_reorged_out_payment_is_reversed_and_a_surviving_one_confirmed(
    make_settings: SettingsFactory,
    anvil_nodes: dict[str, AnvilNode],
    own_arbitrum: AnvilNode,
    agent: LocalAccount,
) -> None:
    nodes = {"arbitrum": own_arbitrum, "base": anvil_nodes["base"]}
    settings = payment_settings(make_settings, nodes)
    async with running_gateway(settings) as gateway:
        ledger, rechecker = gateway.services.ledger, gateway.services.rechecker
        own_arbitrum.mint(USDC_ADDRESS, agent.address, 5 * USDC)
        kept = send_usdc(own_arbitrum, agent, 2 * USDC)
        lost = send_usdc(own_arbitrum, agent, 3 * USDC)  # the newest block: the reorg replaces it
        assert (await topup(gateway, agent, kept)).status_code == 200
        assert (await topup(gateway, agent, lost)).status_code == 200
        assert await gateway.balance(agent.address) == 5 * USDC

        early = await rechecker.run_once()  # neither block is final yet
        payer = agent.address.lower()  # queued as chain:tx:payer (gateway/store/keys.py)
        assert sorted(early.waiting) == sorted(
            [f"{ARBITRUM}:{kept}:{payer}", f"{ARBITRUM}:{lost}:{payer}"]
        )
        assert early.reversed == [] and early.confirmed == []

        own_arbitrum.rpc("anvil_reorg", [1, []])  # same height, empty block: `lost` is gone
        assert own_arbitrum.receipt(lost) is None
        own_arbitrum.mine(3)  # finalized passes both heights

        report = await rechecker.run_once()
        assert report.confirmed == [f"{ARBITRUM}:{kept}:{payer}"]
        [reversal] = report.reversed
        assert reversal.ref == f"{ARBITRUM}:{lost}:{payer}"
        assert reversal.amount_micro == 3 * USDC
        assert reversal.reason == "reorg: transaction no longer in the chain"
        assert await gateway.balance(agent.address) == 2 * USDC

        newest = (await ledger.entries(agent.address))[0]
        assert (newest.kind, newest.amount_micro) == ("reversal", -3 * USDC)
        assert newest.ref == f"{ARBITRUM}:{lost}" and "reorg" in newest.reason
        record = await ledger.payment_record(ARBITRUM, lost, agent.address)
        assert record is not None and record["status"] == "reversed"
        assert record["reversal_reason"] == reversal.reason

        again = await rechecker.run_once()  # nothing queued: reversal and confirmation are once
        assert (again.reversed, again.confirmed, again.waiting) == ([], [], [])
        # The reversed tx keeps its claim: resubmitting it credits nothing.
        assert (await topup(gateway, agent, lost)).status_code == 409
        assert await gateway.balance(agent.address) == 2 * USDC
        await assert_invariants(gateway)


async def test_payment_mined_again_after_a_reorg_is_confirmed_not_reversed(
    make_settings: SettingsFactory,
    anvil_nodes: dict[str, AnvilNode],
    own_arbitrum: AnvilNode,
    agent: LocalAccount,
) -> None:
    nodes = {"arbitrum": own_arbitrum, "base": anvil_nodes["base"]}
    settings = payment_settings(make_settings, nodes)
    usdc = USDC_ADDRESS
    own_arbitrum.mint(usdc, agent.address, USDC)
    own_arbitrum.set_balance(agent.address, 10**18)
    raw = agent.sign_transaction(
        {
            "to": usdc,
            "data": "0xa9059cbb"  # transfer(address,uint256)
            + PAY_TO[2:].lower().rjust(64, "0")
            + hex(USDC)[2:].rjust(64, "0"),
            "gas": 200_000,
            "gasPrice": 2 * 10**9,
            "nonce": 0,
            "chainId": ARBITRUM,
            "value": 0,
        }
    )
    tx = own_arbitrum.rpc("eth_sendRawTransaction", ["0x" + bytes(raw.raw_transaction).hex()])
    async with running_gateway(settings) as gateway:
        assert (await topup(gateway, agent, tx)).status_code == 200
        first_block = int(own_arbitrum.receipt(tx)["blockNumber"], 16)  # type: ignore[index]
        # The block is replaced and the same signed tx lands in the replacement block.
        own_arbitrum.rpc("anvil_reorg", [1, [["0x" + bytes(raw.raw_transaction).hex(), 0]]])
        receipt = own_arbitrum.receipt(tx)
        assert receipt is not None and int(receipt["blockNumber"], 16) == first_block
        own_arbitrum.mine(3)

        report = await gateway.services.rechecker.run_once()
        confirmed = f"{ARBITRUM}:{tx}:{agent.address.lower()}"
        assert report.confirmed == [confirmed] and report.reversed == []
        assert await gateway.balance(agent.address) == USDC
        await assert_invariants(gateway)


async def test_rolled_back_payment_waits_for_finality_then_is_reversed(
    make_settings: SettingsFactory,
    anvil_nodes: dict[str, AnvilNode],
    own_arbitrum: AnvilNode,
    agent: LocalAccount,
) -> None:
    nodes = {"arbitrum": own_arbitrum, "base": anvil_nodes["base"]}
    settings = payment_settings(make_settings, nodes)
    async with running_gateway(settings) as gateway:
        rechecker = gateway.services.rechecker
        own_arbitrum.mint(USDC_ADDRESS, agent.address, USDC)
        tx = send_usdc(own_arbitrum, agent, USDC)
        assert (await topup(gateway, agent, tx)).status_code == 200
        ref = f"{ARBITRUM}:{tx}:{agent.address.lower()}"

        # The chain's tip drops below the payment's block. That height has no block now: an
        # answer (not final yet), not an RPC failure.
        own_arbitrum.rpc("anvil_rollback", [1])
        assert own_arbitrum.receipt(tx) is None
        waiting = await rechecker.run_once()
        assert waiting.waiting == [ref] and waiting.skipped == [], waiting

        own_arbitrum.mine(3)
        report = await rechecker.run_once()
        [reversal] = report.reversed
        assert reversal.ref == ref
        assert reversal.reason == "reorg: transaction no longer in the chain"
        assert await gateway.balance(agent.address) == 0
        await assert_invariants(gateway)
