"""CreateOS's recent name answers serve unpaid quotes only (``gateway.deploy.quoted_names``).

Against the simulator over HTTP: the number of name checks it received is what each rule is
about. A quote within ``upstream.quote_name_seconds`` of an answer reuses it; a paid request
and a deploy on credits always ask CreateOS.
"""

from __future__ import annotations

from eth_account import Account
from eth_account.signers.local import LocalAccount

from devstack.anvil import AnvilNode
from devstack.clock import ManualClock
from devstack.simulator.server import CreateOSSimulator
from gateway.deploy.quoted_names import QuotedNames
from tests.deploy.test_flow import creates, take_name_upstream
from tests.deploy_support import ONE_USD, deploy, deploy_body, deploy_settings
from tests.payment_support import pay
from tests.support import Gateway, SettingsFactory, running_gateway

NAME_CHECK = "/v1/projects/available-unique-name"


def name_checks(sim: CreateOSSimulator) -> int:
    return sum(1 for r in sim.requests if r.method == "POST" and r.path == NAME_CHECK)


# --- the memory itself -------------------------------------------------------------------


def test_an_answer_serves_for_its_seconds_and_then_is_gone() -> None:
    clock = ManualClock()
    names = QuotedNames(5, clock=clock)
    assert names.recall("my-app") is None
    names.remember("My-App", True)
    names.remember("taken-app", False)
    assert names.recall("my-app") is True  # CreateOS names are case-insensitive
    assert names.recall("TAKEN-APP") is False
    clock.advance(4.9)
    assert names.recall("my-app") is True
    clock.advance(0.1)
    assert names.recall("my-app") is None
    assert names.recall("taken-app") is None
    assert len(names) == 0  # an expired answer is dropped when it is read


def test_a_loop_of_fresh_names_keeps_only_the_newest() -> None:
    clock = ManualClock()
    names = QuotedNames(60, max_names=100, clock=clock)
    for i in range(1_000):
        names.remember(f"name-{i}", True)
        clock.advance(0.01)
    assert len(names) == 100
    assert names.recall("name-899") is None
    assert names.recall("name-900") is True
    assert names.recall("name-999") is True


def test_a_refreshed_answer_is_the_newest() -> None:
    clock = ManualClock()
    names = QuotedNames(10, max_names=2, clock=clock)
    names.remember("first", True)
    names.remember("second", True)
    names.remember("first", False)  # refreshed: "second" is now the oldest
    names.remember("third", True)
    assert names.recall("second") is None
    assert names.recall("first") is False
    assert names.recall("third") is True


def test_zero_seconds_remembers_nothing() -> None:
    names = QuotedNames(0, clock=ManualClock())
    names.remember("my-app", True)
    assert names.recall("my-app") is None
    assert len(names) == 0


# --- in the deploy flow ------------------------------------------------------------------


async def test_quotes_of_one_name_ask_createos_once(
    gw: Gateway, sim: CreateOSSimulator, agent: LocalAccount
) -> None:
    other: LocalAccount = Account.create()
    for account in (agent, other, agent):
        response = await deploy(gw, account, deploy_body("quoted-twice"))
        assert response.status_code == 402, response.text
    assert name_checks(sim) == 1
    # Another name is its own question.
    assert (await deploy(gw, agent, deploy_body("quoted-other"))).status_code == 402
    assert name_checks(sim) == 2
    metrics = (await gw.client.get("/metrics")).text
    assert 'gateway_name_checks_total{source="createos"} 2.0' in metrics
    assert 'gateway_name_checks_total{source="remembered"} 2.0' in metrics


async def test_a_taken_name_stays_a_409_for_quotes_without_asking_again(
    gw: Gateway, sim: CreateOSSimulator, sim_url: str, agent: LocalAccount
) -> None:
    await take_name_upstream(sim_url, "held-elsewhere")
    for _ in range(3):
        response = await deploy(gw, agent, deploy_body("held-elsewhere"))
        assert response.status_code == 409
        assert response.json()["code"] == "name_taken"
    assert name_checks(sim) == 1


async def test_the_paid_retry_asks_createos_again(
    gw: Gateway, sim: CreateOSSimulator, sim_url: str, arbitrum: AnvilNode, agent: LocalAccount
) -> None:
    """The name is free when quoted and taken elsewhere before the agent's paid retry: the
    retry asks CreateOS, gets its 409, and the payment is left unclaimed."""
    assert (await deploy(gw, agent, deploy_body("sniped-name"))).status_code == 402
    await take_name_upstream(sim_url, "sniped-name")
    tx = pay(arbitrum, agent, 500_000)
    paid = await deploy(gw, agent, deploy_body("sniped-name"), X_Payment_Tx=tx)
    assert paid.status_code == 409, paid.text
    assert paid.json()["code"] == "name_taken"
    assert name_checks(sim) == 2
    assert await gw.services.ledger.claim_state(42161, tx, agent.address) is None
    assert await gw.balance(agent.address) == 0
    assert len(creates(sim)) == 1  # the one made elsewhere


async def test_a_deploy_on_credits_asks_createos_before_creating(
    gw: Gateway, sim: CreateOSSimulator, sim_url: str, agent: LocalAccount
) -> None:
    """A quote remembered the name as free; the wallet then has credits and deploys without a
    payment: before anything is created, CreateOS is asked again, and the name taken since is a
    409 with no create sent."""
    assert (await deploy(gw, agent, deploy_body("credit-name"))).status_code == 402
    await take_name_upstream(sim_url, "credit-name")
    await gw.credit(agent.address, ONE_USD)
    response = await deploy(gw, agent, deploy_body("credit-name"))
    assert response.status_code == 409, response.text
    assert response.json()["code"] == "name_taken"
    assert name_checks(sim) == 2
    assert len(creates(sim)) == 1  # only the one made elsewhere: ours was never sent
    free = await deploy(gw, agent, deploy_body("credit-other"))
    assert free.status_code == 200, free.text


async def test_zero_seconds_asks_createos_for_every_quote(
    make_settings: SettingsFactory,
    chains: dict[str, AnvilNode],
    sim: CreateOSSimulator,
    agent: LocalAccount,
) -> None:
    settings = deploy_settings(make_settings, chains).with_overrides(quote_name_seconds=0)
    async with running_gateway(settings) as gateway:
        for _ in range(3):
            assert (await deploy(gateway, agent, deploy_body("always-asked"))).status_code == 402
    assert name_checks(sim) == 3
