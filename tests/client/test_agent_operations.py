"""The client's other paid operations against the local stack: a top-up, and new code into an
owned project (redeploy) on the credits it left."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gateway.client.agent import AgentClient
from gateway.client.bundle import Bundle
from gateway.client.errors import SpendCapExceeded
from tests.client.conftest import LocalStack


async def test_top_up_then_deploy_and_redeploy_on_those_credits(local_stack: LocalStack) -> None:
    agent = local_stack.funded_agent()
    async with AgentClient(
        local_stack.gateway.url,
        agent,
        rpc_urls=local_stack.rpc_urls,
        max_usd=Decimal(2),
        poll_seconds=0.2,
    ) as client:
        with pytest.raises(SpendCapExceeded) as refused:
            await client.top_up(Decimal(3))
        assert str(refused.value) == (
            "this top-up pays 3 USD, above the spend cap of 2 USD; nothing was paid"
        )
        assert local_stack.transfers_from(agent.address) == []

        topped = await client.top_up(Decimal("1.5"))
        assert topped.credited_usd == Decimal("1.5") and topped.balance_usd == Decimal("1.5")

        first = await client.deploy(
            Bundle(files={"index.js": b"v1\n"}).upload(), name="topped-up-app"
        )
        assert first.started.payment is None  # the top-up covered it
        second = await client.redeploy(
            first.started.project_id,
            Bundle(files={"index.js": b"v2\n"}).upload(),
            use_existing_credits=True,
        )
        assert second.status.status == "ready"
        assert second.started.project_id == first.started.project_id
        assert second.started.deployment_id != first.started.deployment_id
        credits = await client.credits()

    assert len(local_stack.transfers_from(agent.address)) == 1
    assert credits.balance_usd == Decimal("1.5") and credits.active_projects == 1
