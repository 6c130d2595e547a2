"""The payer-binding rule (gateway/store/keys.py, gateway/ledger.py): a claim is per
(chain, tx, payer), sound because only Transfer logs whose ``from`` is the authenticated wallet
count. One tx that carries transfers from two payers credits each payer their own transfer,
once; neither can take the other's."""

from __future__ import annotations

from devstack.anvil import AnvilNode
from gateway.audit import Audit
from tests.payment_support import calldata, new_payer, send_as, token_address, topup
from tests.support import PAY_TO, USDC, Gateway

ARBITRUM = 42161


def pull_from_two(arbitrum: AnvilNode, amounts: dict[str, int]) -> str:
    """One tx (``BatchPuller.pullAll``) moving each payer's amount to ``PAY_TO``."""
    usdc = token_address(arbitrum, "usdc")
    puller = arbitrum.deploy("BatchPuller")
    for payer, amount in amounts.items():
        arbitrum.mint(usdc, payer, amount)
        approve = calldata("approve(address,uint256)", ["address", "uint256"], [puller, amount])
        send_as(arbitrum, payer, usdc, approve)
    pull = calldata(
        "pullAll(address,address[],address,uint256[])",
        ["address", "address[]", "address", "uint256[]"],
        [usdc, list(amounts), PAY_TO, list(amounts.values())],
    )
    return send_as(arbitrum, next(iter(amounts)), puller, pull)


async def test_one_tx_from_two_payers_credits_each_payer_once(
    pgw: Gateway, arbitrum: AnvilNode
) -> None:
    first, second = new_payer(), new_payer()
    tx = pull_from_two(arbitrum, {first.address: 2 * USDC, second.address: 3 * USDC})

    assert (await topup(pgw, first, tx)).status_code == 200
    # The first payer's credit does not use up the tx: the second payer's transfer is theirs.
    credited = await topup(pgw, second, tx)
    assert credited.status_code == 200, credited.text
    assert await pgw.balance(first.address) == 2 * USDC
    assert await pgw.balance(second.address) == 3 * USDC

    for payer in (first, second):  # each payer's own transfer, once
        again = await topup(pgw, payer, tx)
        assert again.status_code == 409 and again.json()["code"] == "payment_already_processed"
    ledger = pgw.services.ledger
    assert await ledger.payers(ARBITRUM, tx) == sorted(
        [first.address.lower(), second.address.lower()]
    )
    for payer, amount in ((first, 2 * USDC), (second, 3 * USDC)):
        record = await ledger.payment_record(ARBITRUM, tx, payer.address)
        assert record is not None and int(record["amount_micro"]) == amount
    # The operator's view of the tx names both payers, each with their own credit.
    view = await Audit(pgw.settings, ledger, pgw.services.ownership).payment("arbitrum", tx)
    assert {(p["wallet"], p["amount_usd"]) for p in view["payers"]} == {
        (first.address, 2.0),
        (second.address, 3.0),
    }


async def test_a_third_wallet_gets_nothing_from_a_two_payer_tx(
    pgw: Gateway, arbitrum: AnvilNode
) -> None:
    first, second, stranger = new_payer(), new_payer(), new_payer()
    tx = pull_from_two(arbitrum, {first.address: USDC, second.address: USDC})

    refused = await topup(pgw, stranger, tx)
    assert refused.status_code == 402 and refused.json()["reason"] == "payer_mismatch"
    assert await pgw.balance(stranger.address) == 0
    # The stranger's refusal leaves both payers' claims untouched.
    assert (await topup(pgw, first, tx)).status_code == 200
    assert (await topup(pgw, second, tx)).status_code == 200
