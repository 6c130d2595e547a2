"""The deploy lock (gateway/deploy/attempts.py ``DeployLocks``) against a real Redis: taking it
reads the attempt, the balance and the project ids in the same step, a second holder gets the
409, and its release forgets a finished attempt only while the lock is still its own."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.deploy.attempts import DeployAttempts, DeployLocks, Step
from gateway.errors import Conflict
from gateway.ledger import EntryKind, Ledger
from gateway.projects.records import Ownership
from gateway.store import Store, connect_store
from tests.support import raw_redis

WALLET = "0x00000000000000000000000000000000000000A1"
NAME = "lock-app"


@pytest.fixture
async def store(redis_url: str, key_prefix: str) -> AsyncIterator[Store]:
    opened = await connect_store(redis_url, key_prefix)
    try:
        yield opened
    finally:
        await opened.close()


async def test_the_lock_reads_the_attempt_balance_and_projects_when_taken(store: Store) -> None:
    attempts = DeployAttempts(store)
    await attempts.record(WALLET, NAME, kind="deploy", step=Step.CREATED, project_id="p-half")
    await Ledger(store).apply(
        WALLET, EntryKind.ADJUSTMENT, 1_250_000, ref="test", reason="test credit"
    )
    ownership = Ownership(store)
    await ownership.record_project(WALLET, "p-1", unique_name="one", display_name="One")
    await ownership.record_project(WALLET, "p-2", unique_name="two", display_name="Two")

    async with DeployLocks(store, ttl_ms=60_000).hold(WALLET, NAME) as held:
        assert held.attempt is not None
        assert (held.attempt.step, held.attempt.project_id) == (Step.CREATED, "p-half")
        assert held.balance_micro == 1_250_000
        assert held.project_ids == ("p-1", "p-2")
        assert await ownership.active_count(WALLET, among=held.project_ids) == 2


async def test_a_fresh_wallet_holds_the_lock_with_nothing_read(store: Store) -> None:
    async with DeployLocks(store, ttl_ms=60_000).hold(WALLET, NAME) as held:
        assert (held.attempt, held.balance_micro, held.project_ids) == (None, 0, ())


async def test_a_second_holder_gets_409_and_the_lock_is_free_after_the_block(
    store: Store,
) -> None:
    locks = DeployLocks(store, ttl_ms=60_000)
    async with locks.hold(WALLET, NAME):
        with pytest.raises(Conflict) as refused:
            async with locks.hold(WALLET, NAME):
                pytest.fail("two holders of one (wallet, name) lock")
        assert refused.value.fields["code"] == "deploy_in_progress"
        async with locks.hold(WALLET, "another-name"):
            pass  # another name is another lock
    async with locks.hold(WALLET, NAME):
        pass  # released when the first block ended


async def test_a_finished_deploy_forgets_its_attempt_and_an_unfinished_one_keeps_it(
    store: Store,
) -> None:
    attempts = DeployAttempts(store)
    locks = DeployLocks(store, ttl_ms=60_000)
    await attempts.record(WALLET, NAME, kind="deploy", step=Step.UPLOADING, project_id="p")
    with pytest.raises(RuntimeError):
        async with locks.hold(WALLET, NAME):
            raise RuntimeError("the upload failed")
    assert await attempts.load(WALLET, NAME) is not None  # kept for the retry
    async with locks.hold(WALLET, NAME) as held:
        held.finished()
    assert await attempts.load(WALLET, NAME) is None


async def test_a_release_after_the_lock_changed_hands_leaves_the_new_attempt(
    store: Store,
) -> None:
    """A release that arrives after its lock expired and another request took it (a reply lost,
    the release sent again) must not delete the new holder's attempt: that record is what keeps
    a half-made project from being orphaned."""
    attempts = DeployAttempts(store)
    locks = DeployLocks(store, ttl_ms=60_000)
    lock_key = store.keys.deploy_lock(WALLET, NAME)
    redis = raw_redis(store)
    async with locks.hold(WALLET, NAME) as held:
        held.finished()
        await redis.set(lock_key, "another-holder")  # ours expired; someone took it
        await attempts.record(WALLET, NAME, kind="deploy", step=Step.CREATING)
    assert await redis.get(lock_key) == "another-holder"
    attempt = await attempts.load(WALLET, NAME)
    assert attempt is not None and attempt.step is Step.CREATING


async def test_a_recorded_project_is_returned_as_a_read_would_give_it(store: Store) -> None:
    """``record_project`` answers with the record it wrote instead of reading it back."""
    ownership = Ownership(store)
    for deployment in ("d-1", None):
        project_id = f"p-{deployment}"
        recorded = await ownership.record_project(
            WALLET,
            project_id,
            unique_name="Mixed-Case",
            display_name="Shown",
            deployment_id=deployment,
        )
        assert recorded == await ownership.get(project_id)
