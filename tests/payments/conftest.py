"""Fixtures of the payment tests (helpers in ``tests.payment_support``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from devstack.anvil import AnvilNode
from tests.payment_support import assert_invariants, payment_settings
from tests.support import Gateway, SettingsFactory, running_gateway


@pytest.fixture
async def pgw(
    make_settings: SettingsFactory, chains: dict[str, AnvilNode]
) -> AsyncIterator[Gateway]:
    """The gateway in-process on both anvil chains; checks the invariants afterwards."""
    async with running_gateway(payment_settings(make_settings, chains)) as gateway:
        yield gateway
        await assert_invariants(gateway)
