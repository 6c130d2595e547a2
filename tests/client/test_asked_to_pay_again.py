"""The client against a gateway stand-in that answers every payment with another 402: it pays
once, then stops with a clear error, never a second time. Only a 402 that says the payment was
credited and fell short (``credited_usd``, for less than the payment moved) is paid once more,
and then only that shortfall, within the spend cap, which is the total for one command.

The stand-in is a small app over real HTTP that quotes and never verifies; the client's
transfers are real, on the local stack's arbitrum anvil, and counted there as Transfer logs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from devstack.server_thread import ServerThread
from gateway.client.agent import AgentClient
from gateway.client.errors import (
    AskedToPayAgain,
    ClientError,
    CreditsCoverQuote,
    SpendCapExceeded,
)
from gateway.client.journal import MemoryJournal
from gateway.client.models import Progress
from tests.client.conftest import ARBITRUM_USDC, LocalStack
from tests.client.test_never_pays_twice import small_upload

PRICE = 500_000  # 0.50 USDC in base units

#: What the stand-in answers a deploy with, given the payments it was sent so far (in order).
Answer = Callable[[list[str]], tuple[int, dict[str, Any]]]


def usd_number(value: Decimal) -> int | float:
    """A USD figure as the gateway writes it: an integer when whole (``2``, not ``2.0``)."""
    return int(value) if value == value.to_integral_value() else float(value)


def quote(
    amount_token: int = PRICE, *, balance: str = "0", active: int = 1, **extra: Any
) -> dict[str, Any]:
    """A 402 "Payment required" body in the gateway's shape."""
    return {
        "error": "Payment required",
        "amount_usd": usd_number(Decimal(amount_token).scaleb(-6)),
        "amount_token": str(amount_token),
        "current_credit_balance_usd": usd_number(Decimal(balance)),
        "active_projects": active,
        "pay_to": PAY_TO,
        "payment_chain": "arbitrum",
        "token": "usdc",
        "decimals": 6,
        "supported_chains": [{"chain": "arbitrum", "chain_id": 42161, "tokens": ["usdc"]}],
        **extra,
    }


PAY_TO = Account.create().address
STARTED = {"projectId": "p-1", "deploymentId": "d-1", "status": "deploying", "message": "ok"}


@dataclass
class StandIn:
    """The gateway stand-in's recording: the ``X-Payment-Tx`` of every deploy request (None
    for a request without one) and whether it opted in to shared credits."""

    answer: Answer
    payment_headers: list[str | None] = field(default_factory=list)
    opt_ins: list[bool] = field(default_factory=list)

    async def deploy(self, request: Request) -> JSONResponse:
        tx = request.headers.get("x-payment-tx")
        self.payment_headers.append(tx)
        self.opt_ins.append(request.headers.get("x-use-existing-credits") == "true")
        status, body = self.answer([t for t in self.payment_headers if t is not None])
        return JSONResponse(body, status_code=status)

    async def balance(self, request: Request) -> JSONResponse:
        return JSONResponse(
            {"balances": [{"token": "usdc", "address": ARBITRUM_USDC, "decimals": 6}]}
        )


@pytest.fixture
def stand_in_gateway() -> Iterator[Callable[[Answer], tuple[StandIn, str]]]:
    servers: list[ServerThread] = []

    def start(answer: Answer) -> tuple[StandIn, str]:
        stand_in = StandIn(answer)
        app = Starlette(
            routes=[
                Route("/agent/deploy", stand_in.deploy, methods=["POST"]),
                Route("/agent/balance/{address}", stand_in.balance),
            ]
        )
        server = ServerThread(app)
        server.start()
        servers.append(server)
        return stand_in, server.url

    yield start
    for server in servers:
        server.stop()


@dataclass
class Outcome:
    """One deploy through the stand-in: the wallet, its progress, and the error it ended in
    (None: the deploy started)."""

    agent: LocalAccount
    seen: list[Progress]
    error: ClientError | None

    @property
    def paid_amounts(self) -> list[int]:
        return [int(str(t["data"]), 16) for t in self.transfers]

    @property
    def payments(self) -> int:
        return [p.stage for p in self.seen].count("paying")

    transfers: list[dict[str, object]] = field(default_factory=list)


async def deploy_through(stack: LocalStack, url: str, *, max_usd: Decimal = Decimal(5)) -> Outcome:
    """One ``start_deploy`` by a fresh funded wallet; its Transfer logs read from the chain."""
    outcome = Outcome(stack.funded_agent(), [], None)
    async with AgentClient(
        url,
        outcome.agent,
        rpc_urls=stack.rpc_urls,
        max_usd=max_usd,
        journal=MemoryJournal(),
        on_progress=outcome.seen.append,
    ) as client:
        try:
            await client.start_deploy(small_upload(), name="asked-again-app")
        except ClientError as exc:
            outcome.error = exc
    outcome.transfers = stack.transfers_from(outcome.agent.address)
    return outcome


@pytest.mark.parametrize(
    "again",
    [
        pytest.param(lambda: quote(), id="the-same-quote"),
        pytest.param(lambda: quote(credited_usd=0.5), id="credited-yet-the-whole-price"),
        pytest.param(lambda: quote(credited_usd=0.5, balance="0.25"), id="credited-short"),
    ],
)
async def test_a_402_after_every_payment_is_paid_once_then_a_clear_error(
    local_stack: LocalStack,
    stand_in_gateway: Callable[[Answer], tuple[StandIn, str]],
    again: Callable[[], dict[str, Any]],
) -> None:
    stand_in, url = stand_in_gateway(lambda paid: (402, quote() if not paid else again()))

    done = await deploy_through(local_stack, url)

    assert done.paid_amounts == [PRICE]
    error = done.error
    assert isinstance(error, AskedToPayAgain), error
    assert error.tx == done.transfers[0]["transactionHash"]
    assert str(error).startswith(
        f"the gateway asks 0.5 USD again after this deploy's payment {error.tx}"
    )
    assert "; not paying twice. The payment stays in the wallet's credits" in str(error)
    assert done.payments == 1
    assert stand_in.payment_headers == [None, error.tx]  # asked, paid once, asked again: stop


async def test_the_sharing_warning_after_a_payment_is_not_paid(
    local_stack: LocalStack, stand_in_gateway: Callable[[Answer], tuple[StandIn, str]]
) -> None:
    """What the gateway of issue 11 answered: the credits now cover the deploy, "opt in or pay
    this quote". The client paid that again and again; now it stops and says how to opt in."""
    warning = "This wallet has 1 active project funded by the same credits; ..."
    stand_in, url = stand_in_gateway(
        lambda paid: (
            402,
            quote()
            if not paid
            else quote(balance=str(Decimal("0.5") * len(paid)), warning=warning, credited_usd=0.5),
        )
    )

    done = await deploy_through(local_stack, url)

    assert done.paid_amounts == [PRICE]
    assert isinstance(done.error, CreditsCoverQuote), done.error
    assert str(done.error).startswith(
        "this command paid 0.5 USD and the wallet's credits (0.5 USD) cover this deploy "
        "(0.5 USD), but 1 other live project draws on them and would run shorter; "
        "nothing more was paid"
    )
    assert str(done.error).endswith("opt in with use_existing_credits=True")
    assert done.payments == 1
    assert len(stand_in.payment_headers) == 2


async def test_a_sharing_warning_is_never_paid(
    local_stack: LocalStack, stand_in_gateway: Callable[[Answer], tuple[StandIn, str]]
) -> None:
    warned = quote(balance="2", warning="This wallet has 1 active project ...")
    stand_in, url = stand_in_gateway(lambda paid: (402, warned))

    done = await deploy_through(local_stack, url)

    assert done.transfers == []
    assert isinstance(done.error, CreditsCoverQuote), done.error
    assert str(done.error).startswith(
        "the wallet's credits (2 USD) cover this deploy (0.5 USD), but 1 other live project "
        "draws on them and would run shorter; nothing was paid."
    )
    assert done.payments == 0
    assert stand_in.payment_headers == [None]


async def test_a_credited_payment_that_fell_short_is_topped_up_by_the_shortfall_only(
    local_stack: LocalStack, stand_in_gateway: Callable[[Answer], tuple[StandIn, str]]
) -> None:
    """The gateway credits 0.30 of the 0.50 paid (the wallet owed 0.20) and asks 0.20 more:
    that is paid once; the deploy then starts."""

    def answer(paid: list[str]) -> tuple[int, dict[str, Any]]:
        if len(paid) == 1:
            return 402, quote(200_000, balance="0.3", credited_usd=0.5, price_usd=0.5)
        return (200, STARTED) if paid else (402, quote(balance="-0.2"))

    stand_in, url = stand_in_gateway(answer)

    done = await deploy_through(local_stack, url)

    assert done.error is None
    assert done.paid_amounts == [PRICE, 200_000]
    assert done.payments == 2
    assert len(stand_in.payment_headers) == 3 and stand_in.payment_headers[0] is None


async def test_a_shortfall_is_paid_once_only(
    local_stack: LocalStack, stand_in_gateway: Callable[[Answer], tuple[StandIn, str]]
) -> None:
    short = quote(200_000, balance="0.3", credited_usd=0.2)
    stand_in, url = stand_in_gateway(lambda paid: (402, short if paid else quote()))

    done = await deploy_through(local_stack, url)

    assert done.paid_amounts == [PRICE, 200_000]
    assert isinstance(done.error, AskedToPayAgain), done.error
    assert "and the shortfall was paid already; not paying twice" in str(done.error)
    assert len(stand_in.payment_headers) == 3


async def test_the_spend_cap_is_the_total_for_the_command(
    local_stack: LocalStack, stand_in_gateway: Callable[[Answer], tuple[StandIn, str]]
) -> None:
    short = quote(200_000, balance="0.3", credited_usd=0.5)
    _, url = stand_in_gateway(lambda paid: (402, short if paid else quote()))

    done = await deploy_through(local_stack, url, max_usd=Decimal("0.6"))

    assert done.paid_amounts == [PRICE]
    assert isinstance(done.error, SpendCapExceeded), done.error
    assert str(done.error) == (
        "the gateway asks 0.2 USD more after this command paid 0.5 USD: 0.7 USD in all, "
        "above the spend cap of 0.6 USD; nothing more was paid"
    )


async def test_a_shortfall_in_another_token_is_not_paid(
    local_stack: LocalStack, stand_in_gateway: Callable[[Answer], tuple[StandIn, str]]
) -> None:
    other_token = {**quote(200_000, balance="0.3", credited_usd=0.3), "token": "usdt"}
    _, url = stand_in_gateway(lambda paid: (402, other_token if paid else quote()))

    done = await deploy_through(local_stack, url)

    assert done.paid_amounts == [PRICE]
    assert isinstance(done.error, AskedToPayAgain), done.error
    assert ", on arbitrum usdt instead of its chain and token; not paying twice" in str(done.error)
