"""docs/PAYMENTS.md section 4 ledger invariants against a real Redis."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.errors import Unavailable
from gateway.ledger import (
    ApplyOutcome,
    ClaimOutcome,
    CompactResult,
    CreditOutcome,
    EntryKind,
    Ledger,
)
from gateway.store import Store, connect_store
from gateway.store.archive import FileArchive
from tests.support import TcpProxy, raw_redis

WALLET = "0x" + "ab" * 20
TX = "0x" + "12" * 32


@pytest.fixture
async def store(redis_url: str, key_prefix: str) -> AsyncIterator[Store]:
    store = await connect_store(redis_url, key_prefix)
    yield store
    await store.close()


@pytest.fixture
def ledger(store: Store) -> Ledger:
    return Ledger(store)


async def test_entries_sum_to_balance(ledger: Ledger) -> None:
    await ledger.apply(WALLET, EntryKind.ADJUSTMENT, 1_500_000, ref="op", reason="gift")
    await ledger.apply(WALLET, EntryKind.BURN, -685, ref="p1:1", reason="hour")
    await ledger.apply(WALLET, EntryKind.ADJUSTMENT, -15, ref="op", reason="fix")
    report = await ledger.check_consistency(WALLET)
    assert report.ok and report.balance_micro == 1_499_300 and report.entries == 3
    entries = await ledger.entries(WALLET)
    assert [e.amount_micro for e in entries] == [-15, -685, 1_500_000]  # newest first
    assert entries[0].balance_micro == 1_499_300


async def test_consistency_check_detects_a_silent_edit(ledger: Ledger, store: Store) -> None:
    await ledger.apply(WALLET, EntryKind.ADJUSTMENT, 100, ref="op", reason="x")
    await raw_redis(store).incrby(store.keys.balance(WALLET), 5)  # an edit without an entry
    assert not (await ledger.check_consistency(WALLET)).ok


async def test_once_key_applies_once_even_concurrently(ledger: Ledger) -> None:
    guard = "test"
    results = await asyncio.gather(
        *(
            ledger.apply(WALLET, EntryKind.BURN, -10, ref="r", reason="x", once_key=guard)
            for _ in range(20)
        )
    )
    assert sum(r.outcome is ApplyOutcome.APPLIED for r in results) == 1
    assert await ledger.balance(WALLET) == -10


async def test_floor_refuses_overdraft(ledger: Ledger) -> None:
    await ledger.apply(WALLET, EntryKind.ADJUSTMENT, 100, ref="op", reason="x")
    refused = await ledger.apply(WALLET, EntryKind.BURN, -101, ref="r", reason="x", floor_micro=0)
    assert refused.outcome is ApplyOutcome.INSUFFICIENT and refused.balance_micro == 100
    assert (await ledger.check_consistency(WALLET)).entries == 1


async def test_claim_is_exclusive_and_permanent_once_credited(ledger: Ledger) -> None:
    outcome, ticket = await ledger.claim_payment(42161, TX, WALLET)
    assert outcome is ClaimOutcome.RESERVED
    assert (await ledger.claim_payment(42161, TX, WALLET))[0] is ClaimOutcome.BUSY
    credited = await ledger.credit_payment(ticket, WALLET, 2_000_000, {"chain_id": 42161, "tx": TX})
    assert credited.outcome is CreditOutcome.CREDITED and credited.balance_micro == 2_000_000
    assert (await ledger.claim_payment(42161, TX, WALLET))[0] is ClaimOutcome.USED
    # Crediting again with the same ticket changes nothing.
    again = await ledger.credit_payment(ticket, WALLET, 2_000_000, {})
    assert again.outcome is CreditOutcome.USED and await ledger.balance(WALLET) == 2_000_000
    record = await ledger.payment_record(42161, TX, WALLET)
    assert record is not None and record["status"] == "credited"
    assert await ledger.wallet_payments(WALLET) == [f"42161:{TX}"]


async def test_released_claim_can_be_claimed_again(ledger: Ledger) -> None:
    _, ticket = await ledger.claim_payment(8453, TX, WALLET)
    assert await ledger.release_claim(ticket)
    assert (await ledger.claim_payment(8453, TX, WALLET))[0] is ClaimOutcome.RESERVED


async def test_only_the_holder_releases(ledger: Ledger) -> None:
    _, ticket = await ledger.claim_payment(8453, TX, WALLET)
    from gateway.ledger import ClaimTicket

    assert not await ledger.release_claim(ClaimTicket(8453, TX, WALLET, "someone-else"))
    assert await ledger.claim_state(8453, TX, WALLET) == "pending"
    assert await ledger.release_claim(ticket)


async def test_expired_claim_lease_credits_nothing(store: Store) -> None:
    ledger = Ledger(store, claim_lease_ms=50)
    _, ticket = await ledger.claim_payment(42161, TX, WALLET)
    await asyncio.sleep(0.1)
    _, other = await ledger.claim_payment(42161, TX, WALLET)  # lease ran out: another took it
    lost = await ledger.credit_payment(ticket, WALLET, 1, {})
    assert lost.outcome is CreditOutcome.LOST
    assert (await ledger.credit_payment(other, WALLET, 1, {})).outcome is CreditOutcome.CREDITED
    assert await ledger.balance(WALLET) == 1


async def test_reversal_once(ledger: Ledger) -> None:
    _, ticket = await ledger.claim_payment(42161, TX, WALLET)
    await ledger.credit_payment(ticket, WALLET, 700, {"tx": TX}, recheck_block=5)
    first = await ledger.reverse_payment(42161, TX, WALLET, 700, "reorg removed the tx")
    second = await ledger.reverse_payment(42161, TX, WALLET, 700, "reorg removed the tx")
    assert first.outcome is ApplyOutcome.APPLIED and second.outcome is ApplyOutcome.DUPLICATE
    assert await ledger.balance(WALLET) == 0
    entries = await ledger.entries(WALLET)
    assert entries[0].kind == "reversal" and entries[0].reason == "reorg removed the tx"
    assert (await ledger.check_consistency(WALLET)).ok


async def test_a_lost_reply_is_an_error_never_a_second_entry(
    redis_url: str, key_prefix: str
) -> None:
    """Redis applies an adjustment, then the connection is cut before the reply arrives. The
    store does not send the script again (it would move the money twice): the caller gets
    Unavailable (a 503), and the ledger holds the entry exactly once."""
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    proxy = TcpProxy(port)
    store = await connect_store(f"redis://127.0.0.1:{proxy.port}/0", key_prefix)
    try:
        ledger = Ledger(store)
        await ledger.apply(WALLET, EntryKind.ADJUSTMENT, 1, ref="operator", reason="first")
        proxy.drop_next_reply()
        with pytest.raises(Unavailable):
            await ledger.apply(
                WALLET, EntryKind.ADJUSTMENT, 1_500_000, ref="operator", reason="goodwill"
            )
        assert proxy.accepted == 1  # not reconnected to send it again
        assert await ledger.balance(WALLET) == 1_500_001
        assert [e.amount_micro for e in await ledger.entries(WALLET)] == [1_500_000, 1]
        assert (await ledger.check_consistency(WALLET)).ok
    finally:
        await store.close()
        proxy.stop()


# --- compaction (docs/PAYMENTS.md section 9) ----------------------------------------------


async def _burns(ledger: Ledger, count: int, *, start: int = 0) -> None:
    await asyncio.gather(
        *(
            ledger.apply(WALLET, EntryKind.BURN, -(7 + i % 3), ref=f"p1:{i}", reason="hour")
            for i in range(start, start + count)
        )
    )


async def test_compaction_keeps_the_invariants_and_archives_every_entry(
    ledger: Ledger, store: Store, tmp_path: Path
) -> None:
    archive = FileArchive(tmp_path / "archive")
    await ledger.apply(WALLET, EntryKind.ADJUSTMENT, 5_000_000, ref="op", reason="gift")
    await _burns(ledger, 120)
    before = await ledger.check_consistency(WALLET)
    history_before = await ledger.entries(WALLET)

    outcome = await ledger.compact(WALLET, archive, keep=20)
    assert outcome.result is CompactResult.COMPACTED and outcome.archived == 101
    after = await ledger.check_consistency(WALLET)
    assert after.ok and after.entries == 21 and after.compacted == 101
    assert after.balance_micro == before.balance_micro == after.entries_sum_micro
    checkpoint = (await ledger.entries(WALLET))[-1]  # oldest
    assert checkpoint.kind == "checkpoint"
    assert checkpoint.amount_micro == sum(e.amount_micro for e in history_before[20:])
    assert checkpoint.ref == f"seq:{history_before[-1].seq}-{history_before[20].seq}"

    # A second round folds the first checkpoint and the next entries into one.
    await _burns(ledger, 50, start=120)
    again = await ledger.compact(WALLET, archive, keep=10)
    assert again.result is CompactResult.COMPACTED and again.archived == 60
    report = await ledger.check_consistency(WALLET)
    assert report.ok and report.entries == 11 and report.compacted == 161
    assert len(archive.chunks(WALLET)) == 2

    # The archive plus the hot list is the whole history, in order, each entry once.
    history = await ledger.full_history(WALLET, archive)
    assert len(history) == 171
    assert [e.seq for e in history] == sorted(e.seq for e in history)
    assert sum(e.amount_micro for e in history) == await ledger.balance(WALLET)
    assert history[0].reason == "gift"


async def test_compaction_within_keep_does_nothing(ledger: Ledger, tmp_path: Path) -> None:
    archive = FileArchive(tmp_path / "archive")
    await _burns(ledger, 5)
    outcome = await ledger.compact(WALLET, archive, keep=10)
    assert outcome.result is CompactResult.NOTHING
    assert (await ledger.check_consistency(WALLET)).entries == 5
    assert archive.chunks(WALLET) == []


async def test_compaction_refuses_an_inconsistent_ledger(
    ledger: Ledger, store: Store, tmp_path: Path
) -> None:
    archive = FileArchive(tmp_path / "archive")
    await _burns(ledger, 10)
    # An entry whose running balance does not follow: never hidden under a checkpoint.
    await raw_redis(store).lset(
        store.keys.ledger(WALLET),
        3,
        '{"seq": 999999, "ts": 0, "kind": "burn", "amount": "-1", "balance": "5", "ref": "x", '
        '"reason": "forged"}',
    )
    outcome = await ledger.compact(WALLET, archive, keep=2)
    assert outcome.result is CompactResult.INCONSISTENT
    assert (await ledger.check_consistency(WALLET)).entries == 10
    assert archive.chunks(WALLET) == []  # the chunk of a refused compaction is discarded


async def test_concurrent_compactions_fold_once(
    ledger: Ledger, store: Store, tmp_path: Path
) -> None:
    archive = FileArchive(tmp_path / "archive")
    await _burns(ledger, 60)
    outcomes = await asyncio.gather(*(ledger.compact(WALLET, archive, keep=10) for _ in range(4)))
    assert sum(o.result is CompactResult.COMPACTED for o in outcomes) == 1
    report = await ledger.check_consistency(WALLET)
    assert report.ok and report.compacted == 50 and report.entries == 11
    assert len(await ledger.full_history(WALLET, archive)) == 60


async def test_a_checkpoint_anywhere_but_the_head_breaks_the_chain(
    ledger: Ledger, store: Store, tmp_path: Path
) -> None:
    archive = FileArchive(tmp_path / "archive")
    await _burns(ledger, 30)
    await ledger.compact(WALLET, archive, keep=5)
    redis = raw_redis(store)
    key = store.keys.ledger(WALLET)
    head = await redis.lpop(key)
    await redis.rpush(key, head)  # the checkpoint moved to the tail
    assert not (await ledger.check_consistency(WALLET)).ok


async def test_a_spare_chunk_from_a_crash_repeats_nothing_in_the_history(
    ledger: Ledger, store: Store, tmp_path: Path
) -> None:
    archive = FileArchive(tmp_path / "archive")
    await _burns(ledger, 20)
    # A compaction that wrote its chunk and died before its script ran.
    head = await store.list_range(store.keys.ledger(WALLET), 0, 9)
    seqs = [int(json.loads(raw)["seq"]) for raw in head]
    archive.write_chunk(WALLET, seqs[0], seqs[-1], head)
    await _burns(ledger, 10, start=20)
    outcome = await ledger.compact(WALLET, archive, keep=5)
    assert outcome.result is CompactResult.COMPACTED and outcome.archived == 25
    assert len(archive.chunks(WALLET)) == 2  # the spare one and the real one overlap
    history = await ledger.full_history(WALLET, archive)
    assert len(history) == 30 and len({e.seq for e in history}) == 30
    assert sum(e.amount_micro for e in history) == await ledger.balance(WALLET)
    assert (await ledger.check_consistency(WALLET)).ok
