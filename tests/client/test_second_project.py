"""Issue 11 on the local stack: a wallet with a live project deploys a second one, through the
CLI as a subprocess and through the client. Credits that cover it but fund the live project are
never paid: the command stops before paying (exit 3) until the agent opts in, then deploys on
them for nothing; credits that fall short are paid once, and that payment deploys (no second
402). Every payment is counted as a USDC Transfer log on the arbitrum anvil."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from gateway.client.agent import AgentClient
from gateway.client.cli import ExitCode
from gateway.client.errors import CreditsCoverQuote
from gateway.client.models import Progress
from tests.client.conftest import LocalStack
from tests.client.test_cli import answer, cli_env, make_app, run_cli
from tests.client.test_never_pays_twice import small_upload

SHARED = "credits shared with the other live projects"


def project_names(stack: LocalStack) -> list[str]:
    return [project.unique_name for project in stack.simulator.projects()]


def test_cli_second_project_stops_before_paying_then_deploys_on_credits_or_pays_once(
    local_stack: LocalStack, tmp_path: Path
) -> None:
    agent = local_stack.funded_agent()
    env = cli_env(local_stack, agent, tmp_path / "state")
    app = make_app(tmp_path / "app")

    first = run_cli(env, "deploy", str(app), "--name", "cli-live-app")
    assert first.returncode == 0, first.stderr
    assert len(local_stack.transfers_from(agent.address)) == 1

    refused = run_cli(env, "deploy", str(app), "--name", "cli-second-app")
    assert refused.returncode == ExitCode.PAYMENT_REFUSED == 3, refused.stderr
    assert (
        "error: the wallet's credits (0.5 USD) cover this deploy (0.5 USD), but 1 other live "
        "project draws on them and would run shorter; nothing was paid. Rerun with "
        "--use-credits to deploy on the credits" in refused.stderr
    )
    assert "paying" not in refused.stderr
    assert len(local_stack.transfers_from(agent.address)) == 1
    assert "cli-second-app" not in project_names(local_stack)

    on_credits = answer(
        run_cli(env, "deploy", str(app), "--name", "cli-second-app", "--use-credits", "--json")
    )
    assert on_credits["status"]["status"] == "ready"
    assert on_credits["started"]["payment"] is None
    assert len(local_stack.transfers_from(agent.address)) == 1

    # Three months (1.50 USD) are more than the 0.50 of credits: paid once, and that payment
    # deploys next to the two live projects without asking again.
    paid = run_cli(env, "deploy", str(app), "--name", "cli-third-app", "--months", "3", "--json")
    third = answer(paid)
    assert third["status"]["status"] == "ready"
    assert SHARED in third["started"]["message"]
    assert paid.stderr.count("paying 1.5") == 1
    transfers = local_stack.transfers_from(agent.address)
    assert len(transfers) == 2
    assert third["started"]["payment"]["tx_hash"] == transfers[1]["transactionHash"]
    assert project_names(local_stack).count("cli-third-app") == 1


async def test_client_second_project_is_not_paid_on_shared_credits_and_paid_once_when_short(
    local_stack: LocalStack,
) -> None:
    agent = local_stack.funded_agent()
    seen: list[Progress] = []
    async with AgentClient(
        local_stack.gateway.url,
        agent,
        rpc_urls=local_stack.rpc_urls,
        on_progress=seen.append,
        poll_seconds=0.2,
    ) as client:
        await client.top_up(Decimal(2))  # the wallet: 2 USD of credits
        first = await client.deploy(small_upload(), name="client-live-app")
        assert first.started.payment is None

        with pytest.raises(CreditsCoverQuote) as refused:
            await client.deploy(small_upload(), name="client-second-app")
        assert refused.value.balance_usd == 2 and refused.value.active_projects == 1
        assert len(local_stack.transfers_from(agent.address)) == 1  # the top-up only
        assert "client-second-app" not in project_names(local_stack)

        second = await client.deploy(
            small_upload(), name="client-second-app", use_existing_credits=True
        )
        assert second.status.status == "ready" and second.started.payment is None
        assert len(local_stack.transfers_from(agent.address)) == 1

        paying_before = [p.stage for p in seen].count("paying")
        third = await client.deploy(small_upload(), name="client-third-app", months=6)
        credits = await client.credits()

    assert third.status.status == "ready"
    assert third.started.payment is not None and SHARED in third.started.message
    assert [p.stage for p in seen].count("paying") == paying_before + 1
    transfers = local_stack.transfers_from(agent.address)
    assert len(transfers) == 2  # the top-up and the one payment of the 3 USD deploy
    assert int(str(transfers[1]["data"]), 16) == 3_000_000
    assert credits.balance_usd == Decimal(5) and credits.active_projects == 3
    assert project_names(local_stack).count("client-third-app") == 1
