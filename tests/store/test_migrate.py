"""``python -m gateway migrate-keys`` (gateway/store/migrate.py): keys written by a gateway
before the cluster-safe layout, as its scripts wrote them, are read by this one afterwards,
with their guarantees (a used claim stays used, the books still balance, TTLs kept); a second
run moves nothing."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from devstack.gateway_process import write_config
from gateway.config import PROJECT_ROOT
from gateway.ledger import ClaimOutcome, EntryKind, Ledger
from gateway.projects.records import Ownership
from gateway.store import Store, connect_store
from gateway.store.migrate import migrate_key_layout
from tests.support import LOCAL_CONFIG, raw_redis

WALLET = "0x" + "ab" * 20
TX = "0x" + "5c" * 32
PENDING_TX = "0x" + "77" * 32
PROJECT = "3f2c1a00-0000-4000-8000-000000000001"


async def write_old_layout(store: Store) -> None:
    """What the old scripts left: one credited payment, one verification in flight, a project
    metered up to an hour, a queued re-check, a nonce, a deploy lock and a rate bucket."""
    p, redis = store.keys.prefix, raw_redis(store)
    entries = [
        {"seq": 5, "ts": 1, "kind": "payment", "amount": "2000000", "balance": "2000000",
         "ref": f"42161:{TX}", "reason": "payment received"},
        {"seq": 9, "ts": 2, "kind": "burn", "amount": "-685", "balance": "1999315",
         "ref": f"{PROJECT}:480000", "reason": "hour"},
    ]  # fmt: skip
    await redis.set(f"{p}balance:{WALLET}", 1_999_315)
    await redis.rpush(f"{p}ledger:{WALLET}", *(json.dumps(e) for e in entries))
    await redis.set(f"{p}ledger:seq", 9)
    await redis.sadd(f"{p}wallets", WALLET)
    await redis.set(f"{p}claim:42161:{TX}", "used")
    await redis.hset(f"{p}payment:42161:{TX}", mapping={
        "wallet": WALLET, "payer": WALLET, "amount_micro": 2_000_000, "status": "credited",
        "chain_id": 42161, "tx": TX, "block_number": 7,
    })  # fmt: skip
    await redis.lpush(f"{p}wallet:{WALLET}:payments", f"42161:{TX}")
    await redis.zadd(f"{p}recheck", {f"42161:{TX}": 7})
    await redis.set(f"{p}claim:42161:{PENDING_TX}", "pending:abc", px=60_000)
    await redis.hset(f"{p}project:{PROJECT}", mapping={
        "wallet": WALLET, "unique_name": "my-app", "display_name": "My App", "status": "active",
        "created_at_ms": 1, "deployments": "d1",
    })  # fmt: skip
    await redis.sadd(f"{p}wallet:{WALLET}:projects", PROJECT)
    await redis.sadd(f"{p}projects:active", PROJECT)
    await redis.set(f"{p}metered:{PROJECT}", 480_000)
    await redis.set(f"{p}name:my-app", WALLET)
    await redis.set(f"{p}nonce:{WALLET}:n-1", "1", ex=300)
    await redis.set(f"{p}deploylock:{WALLET}:my-app", "token", px=60_000)
    await redis.set(f"{p}rate:127.0.0.1:{WALLET}", "123", px=60_000)


async def test_an_old_layout_is_read_by_this_gateway_after_migrating(
    redis_url: str, key_prefix: str
) -> None:
    store = await connect_store(redis_url, key_prefix)
    try:
        await write_old_layout(store)
        report = await migrate_key_layout(store)
        assert report.problems == []
        assert report.dropped == {"pending claim": 1, "deploy lock": 1, "rate bucket": 1}

        ledger, ownership = Ledger(store), Ownership(store)
        assert await ledger.balance(WALLET) == 1_999_315
        assert (await ledger.check_consistency(WALLET)).ok
        assert await ledger.claim_state(42161, TX, WALLET) == "used"
        assert (await ledger.claim_payment(42161, TX, WALLET))[0] is ClaimOutcome.USED
        assert await ledger.payers(42161, TX) == [WALLET]
        record = await ledger.payment_record(42161, TX, WALLET)
        assert record is not None and record["status"] == "credited"
        assert await ledger.wallet_payments(WALLET) == [f"42161:{TX}"]
        assert await ledger.claim_state(42161, PENDING_TX, WALLET) is None
        project = await ownership.get(PROJECT)
        assert project is not None and project.deployments == ("d1",)
        assert [r.project_id for r in await ownership.projects_of(WALLET)] == [PROJECT]
        assert await ledger.metered_hour(WALLET, PROJECT) == 480_000
        assert await store.lowest(store.keys.recheck_queue(), 10) == [(f"42161:{TX}:{WALLET}", 7)]
        nonce_ttl = await raw_redis(store).ttl(store.keys.nonce(WALLET, "n-1"))
        assert 0 < nonce_ttl <= 300  # still refused as a replay, for the rest of its window

        # The wallet's numbering goes on after its newest entry.
        applied = await ledger.apply(WALLET, EntryKind.ADJUSTMENT, 1, ref="op", reason="after")
        assert applied.seq == 10

        again = await migrate_key_layout(store)
        assert (again.moved, again.dropped, again.problems) == ({}, {}, [])
    finally:
        await store.close()


async def test_the_command_line_migrates_and_reports(
    redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    store = await connect_store(redis_url, key_prefix)
    try:
        await write_old_layout(store)
    finally:
        await store.close()
    config = write_config(
        tmp_path / "gateway.toml", LOCAL_CONFIG, {"gateway.redis_key_prefix": key_prefix}
    )
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "gateway", "--config", str(config), "migrate-keys"],
        cwd=PROJECT_ROOT,
        env={**os.environ, "REDIS_URL": redis_url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["moved"]["payment record"] == 1 and report["problems"] == []
