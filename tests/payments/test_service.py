"""docs/PAYMENTS.md section 2 payment rules, one test each: real anvil chains, real Redis, the
gateway in-process over ASGI, payments credited through ``POST /agent/credits/topup`` (and a paid
deploy). Every test ends with the ledger and claim invariants of ``tests.payment_support``."""

from __future__ import annotations

import time

import pytest
from eth_account.signers.local import LocalAccount

from devstack.anvil import AnvilNode
from devstack.simulator.server import CreateOSSimulator
from tests.deploy_support import deploy, deploy_body, random_tx
from tests.payment_support import (
    ARBITRUM,
    BASE,
    assert_invariants,
    assert_rejected,
    calldata,
    new_payer,
    pay,
    payment_settings,
    send_as,
    token_address,
    topup,
)
from tests.support import PAY_TO, USDC, Gateway, SettingsFactory, running_gateway

# --- credited, once, with what arrived ------------------------------------------------------


async def test_usdc_on_arbitrum_is_credited_once_with_the_amount_received(
    pgw: Gateway, arbitrum: AnvilNode, agent: LocalAccount
) -> None:
    amount = 1_234_567  # 1.234567 USDC: more than any quote, and not a round figure
    tx = pay(arbitrum, agent, amount)

    credited = await topup(pgw, agent, tx)
    assert credited.status_code == 200, credited.text
    body = credited.json()
    assert body["credited_usd"] == 1.234567
    assert body["balance_usd"] == 1.234567
    assert body["credits"] == 123.4567
    assert (body["chain"], body["token"], body["tx"]) == ("arbitrum", "usdc", tx.lower())
    assert await pgw.balance(agent.address) == amount

    again = await topup(pgw, agent, tx)
    assert again.status_code == 409, again.text
    assert again.json()["error"] == "Payment already processed"
    assert again.json()["current_credit_balance_usd"] == 1.234567
    assert await pgw.balance(agent.address) == amount
    [entry] = await pgw.services.ledger.entries(agent.address)
    assert (entry.kind, entry.amount_micro, entry.ref) == ("payment", amount, f"{ARBITRUM}:{tx}")
    record = await pgw.services.ledger.payment_record(ARBITRUM, tx, agent.address)
    assert record is not None and record["amount_units"] == str(amount)
    assert record["payer"] == agent.address and record["pay_to"] == PAY_TO


async def test_usdt_on_base_is_credited_once(
    pgw: Gateway, base: AnvilNode, agent: LocalAccount
) -> None:
    tx = pay(base, agent, 3 * USDC, token="usdt")
    credited = await topup(pgw, agent, tx, chain="base", token="usdt")
    assert credited.status_code == 200, credited.text
    assert (credited.json()["chain"], credited.json()["token"]) == ("base", "usdt")
    assert credited.json()["credited_usd"] == 3

    again = await topup(pgw, agent, tx, chain="base", token="usdt")
    assert again.status_code == 409, again.text
    assert await pgw.balance(agent.address) == 3 * USDC
    assert await pgw.services.ledger.claim_state(BASE, tx, agent.address) == "used"


async def test_overpaid_deploy_keeps_the_rest_as_credit(
    pgw: Gateway, sim: CreateOSSimulator, arbitrum: AnvilNode, agent: LocalAccount
) -> None:
    # The quote for one month is 0.50 USD; 2 USD arrive. The deploy itself is not debited up
    # front (burn is hourly), so the whole payment stays as credit.
    tx = pay(arbitrum, agent, 2 * USDC)
    response = await deploy(pgw, agent, deploy_body("overpaid-app"), X_Payment_Tx=tx)
    assert response.status_code == 200, response.text
    assert len(sim.projects()) == 1
    assert await pgw.balance(agent.address) == 2 * USDC
    assert (await topup(pgw, agent, tx)).status_code == 409


async def test_an_underpaid_deploy_credits_the_payment_and_quotes_the_rest(
    pgw: Gateway, sim: CreateOSSimulator, arbitrum: AnvilNode, agent: LocalAccount
) -> None:
    tx = pay(arbitrum, agent, 300_000)  # 0.30 of a 0.50 quote
    response = await deploy(pgw, agent, deploy_body("short-paid"), X_Payment_Tx=tx)
    assert response.status_code == 402, response.text
    body = response.json()
    assert body["error"] == "Payment required"
    assert body["credited_usd"] == 0.3 and body["current_credit_balance_usd"] == 0.3
    assert body["amount_usd"] == 0.2 and body["price_usd"] == 0.5  # only the rest
    assert sim.projects() == []
    assert await pgw.balance(agent.address) == 300_000


# --- transfers that do not count ------------------------------------------------------------


async def test_look_alike_transfer_from_another_contract_is_rejected(
    pgw: Gateway, arbitrum: AnvilNode, agent: LocalAccount
) -> None:
    emitter = arbitrum.deploy("TransferEmitter")
    data = calldata(
        "emitTransfer(address,address,uint256)",
        ["address", "address", "uint256"],
        [agent.address, PAY_TO, 5 * USDC],
    )
    tx = send_as(arbitrum, agent.address, emitter, data)
    await assert_rejected(
        pgw, await topup(pgw, agent, tx), wallet=agent.address, chain_id=ARBITRUM, tx=tx,
        reason="wrong_token",
    )  # fmt: skip


async def test_usdt_transfer_named_as_usdc_is_rejected(
    pgw: Gateway, arbitrum: AnvilNode, agent: LocalAccount
) -> None:
    tx = pay(arbitrum, agent, USDC, token="usdt")
    response = await topup(pgw, agent, tx, token="usdc")
    await assert_rejected(
        pgw, response, wallet=agent.address, chain_id=ARBITRUM, tx=tx, reason="wrong_token"
    )
    assert (await topup(pgw, agent, tx, token="usdt")).status_code == 200


async def test_transfer_to_another_address_is_rejected(
    pgw: Gateway, arbitrum: AnvilNode, agent: LocalAccount
) -> None:
    tx = pay(arbitrum, agent, USDC, to=new_payer().address)
    await assert_rejected(
        pgw, await topup(pgw, agent, tx), wallet=agent.address, chain_id=ARBITRUM, tx=tx,
        reason="wrong_recipient",
    )  # fmt: skip


async def test_payment_by_another_wallet_is_rejected_and_stays_claimable_by_its_payer(
    pgw: Gateway, arbitrum: AnvilNode, agent: LocalAccount
) -> None:
    payer = new_payer()
    tx = pay(arbitrum, payer, USDC)  # a public hash: the agent tries to claim someone's payment
    await assert_rejected(
        pgw, await topup(pgw, agent, tx), wallet=agent.address, chain_id=ARBITRUM, tx=tx,
        reason="payer_mismatch",
    )  # fmt: skip
    credited = await topup(pgw, payer, tx)
    assert credited.status_code == 200, credited.text
    assert await pgw.balance(payer.address) == USDC


async def test_the_payer_is_the_log_sender_never_tx_from(
    pgw: Gateway, arbitrum: AnvilNode, agent: LocalAccount
) -> None:
    # A relayer sends the tx (tx.from) and moves the agent's tokens with transferFrom: the
    # agent paid. The relayer, though it signed the transaction, paid nothing.
    relayer = new_payer()
    usdc = token_address(arbitrum, "usdc")
    arbitrum.mint(usdc, agent.address, USDC)
    approve = calldata("approve(address,uint256)", ["address", "uint256"], [relayer.address, USDC])
    send_as(arbitrum, agent.address, usdc, approve)
    pull = calldata(
        "transferFrom(address,address,uint256)",
        ["address", "address", "uint256"],
        [agent.address, PAY_TO, USDC],
    )
    tx = send_as(arbitrum, relayer.address, usdc, pull)
    assert arbitrum.rpc("eth_getTransactionByHash", [tx])["from"].lower() == relayer.address.lower()

    await assert_rejected(
        pgw, await topup(pgw, relayer, tx), wallet=relayer.address, chain_id=ARBITRUM, tx=tx,
        reason="payer_mismatch",
    )  # fmt: skip
    credited = await topup(pgw, agent, tx)
    assert credited.status_code == 200, credited.text
    assert await pgw.balance(agent.address) == USDC


async def test_reverted_transfer_is_rejected(
    pgw: Gateway, arbitrum: AnvilNode, agent: LocalAccount
) -> None:
    usdc = token_address(arbitrum, "usdc")
    tx = arbitrum.transfer(usdc, agent.address, PAY_TO, USDC, impersonate=True)  # holds none
    assert int(arbitrum.receipt(tx)["status"], 16) == 0  # type: ignore[index]
    await assert_rejected(
        pgw, await topup(pgw, agent, tx), wallet=agent.address, chain_id=ARBITRUM, tx=tx,
        reason="reverted",
    )  # fmt: skip


async def test_tx_without_a_transfer_log_is_rejected(
    pgw: Gateway, arbitrum: AnvilNode, agent: LocalAccount
) -> None:
    usdc = token_address(arbitrum, "usdc")
    approve = calldata("approve(address,uint256)", ["address", "uint256"], [PAY_TO, USDC])
    tx = send_as(arbitrum, agent.address, usdc, approve)  # succeeds, emits only Approval
    await assert_rejected(
        pgw, await topup(pgw, agent, tx), wallet=agent.address, chain_id=ARBITRUM, tx=tx,
        reason="nothing_transferred",
    )  # fmt: skip


async def test_payment_older_than_max_payment_age_is_rejected(
    make_settings: SettingsFactory,
    chains: dict[str, AnvilNode],
    arbitrum: AnvilNode,
    agent: LocalAccount,
) -> None:
    settings = payment_settings(make_settings, chains)
    tx = pay(arbitrum, agent, USDC)
    age = settings.max_payment_age_seconds + 3600

    def later() -> float:  # the gateway's clock (and the agent's), 73 h after the payment
        return time.time() + age

    async with running_gateway(settings, clock=later) as gateway:
        response = await topup(gateway, agent, tx, clock=later)
        body = await assert_rejected(
            gateway, response, wallet=agent.address, chain_id=ARBITRUM, tx=tx, reason="too_old"
        )
        assert "72 h" in body["detail"]
        await assert_invariants(gateway)
    async with running_gateway(settings) as gateway:  # the same tx, young: still claimable
        assert (await topup(gateway, agent, tx)).status_code == 200
        await assert_invariants(gateway)


async def test_right_tx_named_with_the_wrong_chain_is_rejected(
    pgw: Gateway, arbitrum: AnvilNode, agent: LocalAccount
) -> None:
    tx = pay(arbitrum, agent, USDC)
    body = await assert_rejected(
        pgw, await topup(pgw, agent, tx, chain="base"), wallet=agent.address, chain_id=BASE,
        tx=tx, reason="wrong_chain",
    )  # fmt: skip
    assert body["found_on_chain"] == "arbitrum"
    assert (await topup(pgw, agent, tx, chain="arbitrum")).status_code == 200


async def test_unknown_hash_is_not_found_without_a_quote(pgw: Gateway, agent: LocalAccount) -> None:
    tx = random_tx()
    response = await topup(pgw, agent, tx)
    assert response.status_code == 402, response.text
    assert response.json() == {
        "error": "Payment transaction not found",
        "payment_status": "not_found",
    }
    assert int(response.headers["retry-after"]) >= 1
    assert response.headers["cache-control"] == "no-store"
    assert await pgw.services.ledger.claim_state(ARBITRUM, tx, agent.address) is None


@pytest.mark.parametrize(
    "tx",
    [
        "0x" + "ab" * 31,  # 31 bytes
        "0x" + "ab" * 33,
        "ab" * 32,  # no 0x
        "0X" + "ab" * 32,
        "0x" + "zz" * 32,
    ],
    ids=["short", "long", "no-prefix", "0X", "not-hex"],
)
async def test_malformed_hash_is_400(pgw: Gateway, agent: LocalAccount, tx: str) -> None:
    response = await topup(pgw, agent, tx)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "malformed_tx"
    assert await pgw.balance(agent.address) == 0


@pytest.mark.parametrize(
    ("chain", "token", "code"),
    [("ethereum", None, "unknown_chain"), ("arbitrum", "dai", "unknown_token")],
)
async def test_unknown_chain_or_token_is_400(
    pgw: Gateway, arbitrum: AnvilNode, agent: LocalAccount, chain: str, token: str | None, code: str
) -> None:
    tx = pay(arbitrum, agent, USDC)
    response = await topup(pgw, agent, tx, chain=chain, token=token)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == code
    assert await pgw.services.ledger.claim_state(ARBITRUM, tx, agent.address) is None
    assert (await topup(pgw, agent, tx)).status_code == 200  # nothing was claimed


# --- one tx, one claim ----------------------------------------------------------------------


async def test_hash_case_does_not_make_a_new_claim(
    pgw: Gateway, arbitrum: AnvilNode, agent: LocalAccount
) -> None:
    tx = pay(arbitrum, agent, USDC)
    upper = "0x" + tx[2:].upper()
    mixed = "0x" + "".join(c.upper() if i % 2 else c for i, c in enumerate(tx[2:]))
    assert len({tx, upper, mixed}) == 3

    first = await topup(pgw, agent, upper)
    assert first.status_code == 200, first.text
    assert first.json()["tx"] == tx.lower()
    for variant in (tx, mixed, upper):
        again = await topup(pgw, agent, variant)
        assert again.status_code == 409, again.text
        assert again.json()["current_credit_balance_usd"] == 1
    assert await pgw.balance(agent.address) == USDC
    assert await pgw.services.ledger.claim_state(ARBITRUM, tx.lower(), agent.address) == "used"
