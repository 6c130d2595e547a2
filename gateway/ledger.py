"""The credit ledger in Redis (docs/PAYMENTS.md section 4) and the payment claims that feed it.

Invariants:
- balances and entries are integer micro-USD; 1 USD = 100 credits;
- every balance change is an append-only entry (payment, reversal, burn, adjustment) written by
  the same Lua script that changes the balance, so ``sum(entries) == balance`` always holds
  (``check_consistency`` proves it for a wallet);
- a payment is claimed once per ``(chain_id, tx, payer)``: ``claim_payment`` reserves it
  before any RPC call (a lease, so a crashed verifier cannot lock it forever), ``release_claim``
  gives it back on failure, ``credit_payment`` marks it used forever and credits it in one
  script. The claim lives in the payer's hash slot with the balance, so that script is also the
  guard against a double credit on a Redis Cluster. Per payer is sound because only Transfer
  logs whose ``from`` is the payer are counted (``payments.verify``): one tx carrying transfers
  from two payers credits each payer once, with their own logs (``store/keys.py``);
- global indexes (the wallets set, the payers of a tx, the re-check queue) are written outside
  the scripts, before the fact they point at (and the re-check entry again after it);
- the hot list stays bounded: ``compact`` archives a wallet's oldest entries outside Redis
  (``gateway.store.archive``) and folds them into one ``checkpoint`` entry at the head whose
  amount is their sum and whose balance is the last one's, so both properties above still hold
  over what stays in Redis, and the archive plus the hot list is the whole history.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

from gateway.store import Store
from gateway.types import Clock, system_clock

#: Wallets remembered as already in the wallets set (then forgotten all at once).
_NOTED_MAX = 65_536


class EntryKind(str, Enum):
    PAYMENT = "payment"
    REVERSAL = "reversal"
    BURN = "burn"
    ADJUSTMENT = "adjustment"
    CHECKPOINT = "checkpoint"  # stands for compacted entries (``Ledger.compact``)


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    seq: int
    ts_ms: int
    kind: str
    amount_micro: int  # signed
    balance_micro: int  # balance after this entry
    ref: str
    reason: str

    def as_wire(self) -> dict[str, Any]:
        from gateway.types import micro_to_usd_number

        return {
            "seq": self.seq,
            "ts": self.ts_ms,
            "kind": self.kind,
            "amount_usd": micro_to_usd_number(self.amount_micro),
            "balance_usd": micro_to_usd_number(self.balance_micro),
            "ref": self.ref,
            "reason": self.reason,
        }


class ClaimOutcome(str, Enum):
    RESERVED = "reserved"  # ours now: verify, then credit or release
    USED = "used"  # credited before: 409
    BUSY = "busy"  # another request is verifying it right now


class CreditOutcome(str, Enum):
    CREDITED = "credited"
    USED = "used"  # someone else credited it (cannot happen while we hold the claim)
    LOST = "lost"  # our claim's lease ran out before crediting: nothing credited


class ApplyOutcome(str, Enum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"  # the guard key says this change was made already
    INSUFFICIENT = "insufficient"  # would go below the floor


class BurnOutcome(str, Enum):
    BURNED = "burned"
    DUPLICATE = "duplicate"  # this hour (or a later one) of the project was metered already
    INSUFFICIENT = "insufficient"  # the balance cannot pay it: nothing written
    INACTIVE = "inactive"  # the project is suspended, deleted or unknown: nothing written


@dataclass(frozen=True, slots=True)
class Applied:
    outcome: ApplyOutcome | CreditOutcome | BurnOutcome
    balance_micro: int
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class ClaimTicket:
    """Proof that this request holds the claim on ``(chain_id, tx_hash, payer)``."""

    chain_id: int
    tx_hash: str
    payer: str  # lowercase
    token: str


@dataclass(frozen=True, slots=True)
class ConsistencyReport:
    wallet: str
    balance_micro: int
    entries_sum_micro: int
    entries: int  # in the hot list, a checkpoint included
    chain_ok: bool  # each entry's running balance follows from the one before
    compacted: int = 0  # entries the leading checkpoint stands for (archived)

    @property
    def ok(self) -> bool:
        return self.chain_ok and self.balance_micro == self.entries_sum_micro


class Ledger:
    """Balances, entries and payment claims of every wallet."""

    def __init__(
        self, store: Store, *, clock: Clock = system_clock, claim_lease_ms: int = 60_000
    ) -> None:
        self._store = store
        self._keys = store.keys
        self._clock = clock
        self._claim_lease_ms = claim_lease_ms
        self._noted: set[str] = set()  # wallets this process has put in the wallets set

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _entry_keys(self, wallet: str) -> list[str]:
        k = self._keys
        return [k.balance(wallet), k.ledger(wallet), k.ledger_seq(wallet)]

    async def _note_wallet(self, wallet: str) -> None:
        """Add to the global wallets set before a first entry can exist (an index may name a
        wallet with no entries yet; never the other way round). Durable, and once per process
        and wallet: a credit's path pays this round trip once, not on every payment."""
        wallet = wallet.lower()
        if wallet in self._noted:
            return
        await self._store.add_member(self._keys.wallets(), wallet, durable=True)
        if len(self._noted) >= _NOTED_MAX:
            self._noted.clear()
        self._noted.add(wallet)

    # --- reads ----------------------------------------------------------------------------

    async def balance(self, wallet: str) -> int:
        raw = await self._store.get(self._keys.balance(wallet))
        return int(raw or 0)

    async def entries(self, wallet: str, *, limit: int | None = None) -> list[LedgerEntry]:
        """Newest first; ``limit`` entries at most."""
        start = -limit if limit else 0
        raw = await self._store.list_range(self._keys.ledger(wallet), start, -1)
        return [_parse_entry(item) for item in reversed(raw)]

    async def wallets(self) -> list[str]:
        return sorted(await self._store.members(self._keys.wallets()))

    async def check_consistency(self, wallet: str) -> ConsistencyReport:
        """Read balance and entries in one MULTI and prove sum(entries) == balance."""
        raw_balance, raw_entries = await self._store.get_with_list(
            self._keys.balance(wallet), self._keys.ledger(wallet)
        )
        entries = [_parse_entry(item) for item in raw_entries]
        running = 0
        chain_ok = True
        compacted = 0
        for index, entry in enumerate(entries):
            running += entry.amount_micro
            chain_ok = chain_ok and entry.balance_micro == running
            if entry.kind == EntryKind.CHECKPOINT.value:
                chain_ok = chain_ok and index == 0  # only ever the head
                compacted = _checkpoint_count(raw_entries[index])
        return ConsistencyReport(
            wallet=wallet.lower(),
            balance_micro=int(raw_balance or 0),
            entries_sum_micro=running,
            entries=len(entries),
            chain_ok=chain_ok,
            compacted=compacted,
        )

    # --- compaction (bounded memory per wallet) ---------------------------------------------

    async def entry_count(self, wallet: str) -> int:
        """Entries in the hot list (a checkpoint included)."""
        return await self._store.list_length(self._keys.ledger(wallet))

    async def compact(self, wallet: str, archive: LedgerArchive, *, keep: int) -> CompactOutcome:
        """Archive all but the newest ``keep`` entries of ``wallet`` and replace them with one
        checkpoint entry (``compact_ledger.lua``). The chunk is on disk before Redis changes:
        a crash in between leaves the entries in Redis and a spare chunk whose entries the
        next chunk repeats (readers skip repeated seqs). A concurrent compaction of the same
        wallet (the head changed) writes nothing. An inconsistent ledger is never compacted
        (and its chunk is removed)."""
        key = self._keys.ledger(wallet)
        total = await self._store.list_length(key)
        fold = total - keep
        if fold < 2:
            return CompactOutcome(CompactResult.NOTHING, 0)
        head = await self._store.list_range(key, 0, fold - 1)
        if len(head) != fold:
            return CompactOutcome(CompactResult.CHANGED, 0)
        parsed = [_parse_entry(raw) for raw in head]
        fresh = [raw for raw, e in zip(head, parsed, strict=True) if e.kind != "checkpoint"]
        fresh_seqs = [e.seq for e in parsed if e.kind != "checkpoint"]
        if not fresh:
            return CompactOutcome(CompactResult.NOTHING, 0)
        chunk = archive.write_chunk(wallet, fresh_seqs[0], fresh_seqs[-1], fresh)
        result = await self._store.run(
            "compact_ledger",
            [key],
            [fold, parsed[0].seq, parsed[-1].seq, self._now_ms(), chunk.name, chunk.sha256],
        )
        outcome = CompactResult(result[0])
        if outcome is CompactResult.INCONSISTENT:
            archive.discard(chunk)
        if outcome is not CompactResult.COMPACTED:
            # CHANGED keeps the chunk: a concurrent compaction of the same head may have
            # written the same name and depend on it; a spare chunk only repeats entries,
            # which readers skip by seq.
            return CompactOutcome(outcome, 0)
        return CompactOutcome(outcome, len(fresh), chunk=chunk.name)

    async def full_history(self, wallet: str, archive: LedgerArchive) -> list[LedgerEntry]:
        """Archived entries then the hot list's (checkpoint left out), oldest first: every
        entry the wallet ever had (operator reads; may be long)."""
        seen: set[int] = set()
        history: list[LedgerEntry] = []
        for raw in archive.entries(wallet):
            entry = _parse_entry(raw)
            if entry.seq not in seen:  # a chunk rewritten after a crash repeats entries
                seen.add(entry.seq)
                history.append(entry)
        for entry in reversed(await self.entries(wallet)):
            if entry.kind != EntryKind.CHECKPOINT.value and entry.seq not in seen:
                history.append(entry)
        return history

    # --- changes --------------------------------------------------------------------------

    async def apply(
        self,
        wallet: str,
        kind: EntryKind,
        amount_micro: int,
        *,
        ref: str,
        reason: str,
        once_key: str | None = None,
        floor_micro: int | None = None,
    ) -> Applied:
        """Add a signed entry. With ``once_key`` the change happens at most once for that key
        (a name: the guard key is the wallet's ``ledger_guard``, written in the same script);
        with ``floor_micro`` it is refused when the balance would end below the floor."""
        guard = self._keys.ledger_guard(wallet, once_key or "-")
        keys = [*self._entry_keys(wallet), guard]
        await self._note_wallet(wallet)
        args = [
            amount_micro,
            kind.value,
            ref,
            reason,
            self._now_ms(),
            "1" if once_key else "0",
            "" if floor_micro is None else floor_micro,
        ]
        result = await self._store.run("ledger_apply", keys, args)
        outcome = ApplyOutcome(result[0])
        seq = int(result[2]) if len(result) > 2 else None
        return Applied(outcome=outcome, balance_micro=int(result[1]), seq=seq)

    async def burn_hour(
        self, wallet: str, project_id: str, hour: int, amount_micro: int, *, reason: str
    ) -> Applied:
        """Burn ``amount_micro`` (> 0) for hour ``hour`` (Unix hours) of an active project, at
        most once per (project, hour): the burn entry (ref ``project_id:hour``), the balance and
        the project's metered-hour marker are written by one script (``burn_hour.lua``). Hours
        at or before the marker are duplicates; a balance below the amount writes nothing."""
        k = self._keys
        keys = [
            k.metered_hour(wallet, project_id),
            k.project(wallet, project_id),
            *self._entry_keys(wallet),
        ]
        args = [
            hour,
            amount_micro,
            self._now_ms(),
            f"{project_id}:{hour}",
            reason,
        ]
        result = await self._store.run("burn_hour", keys, args)
        seq = int(result[2]) if len(result) > 2 else None
        return Applied(outcome=BurnOutcome(result[0]), balance_micro=int(result[1]), seq=seq)

    async def metered_hour(self, wallet: str, project_id: str) -> int | None:
        """The last hour (Unix hours) burned or skipped for a project; None before the first."""
        raw = await self._store.get(self._keys.metered_hour(wallet, project_id))
        return None if raw is None else int(raw)

    async def skip_hours(self, wallet: str, project_id: str, through_hour: int) -> int:
        """Mark every hour up to ``through_hour`` metered without burning (never moves back);
        returns the marker afterwards."""
        marker = await self._store.run(
            "skip_hours", [self._keys.metered_hour(wallet, project_id)], [through_hour]
        )
        return int(marker)

    async def claim_payment(
        self, chain_id: int, tx_hash: str, payer: str
    ) -> tuple[ClaimOutcome, ClaimTicket]:
        """Reserve ``payer``'s transfers in ``tx_hash`` (another payer's in the same tx are
        theirs to claim)."""
        ticket = ClaimTicket(
            chain_id=chain_id, tx_hash=tx_hash, payer=payer.lower(), token=secrets.token_hex(8)
        )
        result = await self._store.run(
            "claim_payment",
            [self._keys.claim(chain_id, tx_hash, payer)],
            [ticket.token, self._claim_lease_ms],
        )
        return ClaimOutcome(result), ticket

    async def release_claim(self, ticket: ClaimTicket) -> bool:
        released = await self._store.run(
            "release_claim",
            [self._keys.claim(ticket.chain_id, ticket.tx_hash, ticket.payer)],
            [ticket.token],
        )
        return bool(int(released))

    async def claim_state(self, chain_id: int, tx_hash: str, payer: str) -> str | None:
        """``None`` (unclaimed), ``"used"`` or ``"pending"``: ``payer``'s claim on the tx."""
        raw = await self._store.get(self._keys.claim(chain_id, tx_hash, payer))
        if raw is None:
            return None
        return "used" if raw == "used" else "pending"

    async def payers(self, chain_id: int, tx_hash: str) -> list[str]:
        """Wallets that claimed a payment in the tx (an index: check each one's record)."""
        return sorted(await self._store.members(self._keys.tx_payers(chain_id, tx_hash)))

    async def credit_payment(
        self,
        ticket: ClaimTicket,
        wallet: str,
        amount_micro: int,
        record: Mapping[str, str | int],
        *,
        recheck_block: int | None = None,
        reason: str = "payment received",
    ) -> Applied:
        """Mark the claimed payment used and credit ``amount_micro`` in one script, durably
        (``Store``: a deploy, a top-up's 200 or a settlement answer rests on it). ``record`` is
        the verification stored for operators; ``recheck_block`` queues a finality re-check;
        ``reason`` is the ledger entry's (the reconciler names itself there). ``wallet`` must be
        the ticket's payer.

        The global indexes go around the script: the wallet and the tx's payer before it, the
        re-check entry before it (so a crash right after the credit cannot lose the re-check)
        and once more after it (so a re-check pass that dropped the entry while the credit was
        in flight cannot either)."""
        if wallet.lower() != ticket.payer:
            raise ValueError("a payment is credited to the payer that claimed it")
        k = self._keys
        ref = f"{ticket.chain_id}:{ticket.tx_hash}"
        keys = [
            k.claim(ticket.chain_id, ticket.tx_hash, wallet),
            k.payment(ticket.chain_id, ticket.tx_hash, wallet),
            *self._entry_keys(wallet),
            k.wallet_payments(wallet),
        ]
        args = [ticket.token, amount_micro, self._now_ms(), ref, json.dumps(dict(record)), reason]
        queued = f"{ref}:{ticket.payer}"
        before = [
            self._note_wallet(wallet),
            self._store.add_member(k.tx_payers(ticket.chain_id, ticket.tx_hash), ticket.payer),
        ]
        if recheck_block is not None:
            before.append(self._store.add_scored(k.recheck_queue(), queued, recheck_block))
        await asyncio.gather(*before)  # one round trip: coalesced by the store
        result = await self._store.run("credit_payment", keys, args, durable=True)
        outcome = CreditOutcome(result[0])
        if outcome is CreditOutcome.CREDITED and recheck_block is not None:
            await self._store.add_scored(k.recheck_queue(), queued, recheck_block, durable=True)
        seq = int(result[2]) if len(result) > 2 else None
        return Applied(outcome=outcome, balance_micro=int(result[1]), seq=seq)

    async def reverse_payment(
        self, chain_id: int, tx_hash: str, wallet: str, amount_micro: int, reason: str
    ) -> Applied:
        """Reverse ``wallet``'s credited payment in a tx (reorg). At most once per payment; its
        re-check entry is dropped afterwards (if that is lost, the next pass finds the record
        reversed and drops it)."""
        k = self._keys
        ref = f"{chain_id}:{tx_hash}"
        keys = [k.payment(chain_id, tx_hash, wallet), *self._entry_keys(wallet)]
        result = await self._store.run(
            "reverse_payment", keys, [amount_micro, self._now_ms(), ref, reason]
        )
        outcome = ApplyOutcome.APPLIED if result[0] == "reversed" else ApplyOutcome.DUPLICATE
        await self._store.remove_member(k.recheck_queue(), f"{ref}:{wallet.lower()}")
        seq = int(result[2]) if len(result) > 2 else None
        return Applied(outcome=outcome, balance_micro=int(result[1]), seq=seq)

    async def payment_record(
        self, chain_id: int, tx_hash: str, payer: str
    ) -> dict[str, str] | None:
        """``payer``'s recorded payment in the tx, if credited (or reversed)."""
        raw = await self._store.hash(self._keys.payment(chain_id, tx_hash, payer))
        return {str(k): str(v) for k, v in raw.items()} or None

    async def wallet_payments(self, wallet: str, *, limit: int = 50) -> list[str]:
        """``chain_id:tx`` refs of a wallet's credited payments, newest first."""
        refs = await self._store.list_range(self._keys.wallet_payments(wallet), 0, limit - 1)
        return [str(r) for r in refs]


class CompactResult(str, Enum):
    COMPACTED = "compacted"
    NOTHING = "nothing"  # no more than ``keep`` entries (or only a checkpoint) to fold
    CHANGED = "changed"  # another compaction moved the head meanwhile: nothing written
    INCONSISTENT = "inconsistent"  # the entries do not add up: left for an operator to see


@dataclass(frozen=True, slots=True)
class CompactOutcome:
    result: CompactResult
    archived: int  # entries written to the archive by this call
    chunk: str | None = None


class ArchiveChunk(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def sha256(self) -> str: ...


class LedgerArchive(Protocol):
    """Where compacted entries go (``gateway.store.archive.FileArchive``)."""

    def write_chunk(
        self, wallet: str, first_seq: int, last_seq: int, entries: Sequence[str]
    ) -> ArchiveChunk: ...

    def discard(self, chunk: Any) -> None:
        """Undo ``write_chunk`` when the compaction it was for did not happen."""
        ...

    def entries(self, wallet: str) -> Iterator[str]: ...


def _checkpoint_count(raw: str) -> int:
    return int(json.loads(raw).get("count", 0))


def _parse_entry(raw: str) -> LedgerEntry:
    data = json.loads(raw)
    return LedgerEntry(
        seq=int(data["seq"]),
        ts_ms=int(data["ts"]),
        kind=str(data["kind"]),
        amount_micro=int(data["amount"]),
        balance_micro=int(data["balance"]),
        ref=str(data.get("ref", "")),
        reason=str(data.get("reason", "")),
    )
