"""Operator reads and audited adjustments (docs/PROTOCOL.md section 3, Operator).

The one place that says what an operator sees: ``/admin/*`` (``gateway.web.admin``) and the
command line (``python -m gateway credits|payment``) both render these dicts, so the two never
disagree. Addresses come out EIP-55 checksummed; money as micro-USD integers plus USD numbers.

- ``wallet(address)``: credits, ledger consistency, projects (with their metered hour), the
  latest ledger entries and the credited payments.
- ``payment(chain, tx)``: the verification recorded when a payment was credited (and any
  reversal), plus the state of its claim.
- ``adjust(address, amount_usd, reason)``: a signed ``adjustment`` ledger entry naming the
  reason, written like every other balance change (never a silent edit).

Bad input raises ``BadRequest`` naming the field; an unknown payment raises ``NotFound``.
"""

from __future__ import annotations

from typing import Any

from gateway.config import Settings
from gateway.errors import BadRequest, NotFound
from gateway.ledger import EntryKind, Ledger
from gateway.projects.records import Ownership
from gateway.types import (
    canonical_tx_hash,
    checksum_address,
    is_address,
    micro_to_credits,
    micro_to_usd_number,
    usd_to_micro,
)

#: Ledger entries and payments shown for a wallet, newest first.
LEDGER_SHOWN = 100
PAYMENTS_SHOWN = 50
MAX_REASON_CHARS = 500
ADJUSTMENT_REF = "operator"

_ADDRESS_FIELDS = frozenset({"wallet", "payer", "pay_to", "token_address"})
_INT_FIELDS = frozenset(
    {
        "chain_id",
        "amount_micro",
        "block_number",
        "block_timestamp",
        "confirmations",
        "credited_at",
        "ledger_seq",
        "reversed_at",
        "reversal_seq",
    }
)


def parse_address(text: str, *, field: str = "address") -> str:
    """EIP-55 form of ``0x`` + 40 hex digits in any case; 400 naming ``field`` otherwise."""
    if not is_address(text):
        raise BadRequest(
            f"{field} must be 0x followed by 40 hex digits", code="invalid_address", field=field
        )
    return checksum_address(text)


class Audit:
    """Reads of wallets and payments, and operator adjustments; see the module docstring."""

    def __init__(self, settings: Settings, ledger: Ledger, ownership: Ownership) -> None:
        self._settings = settings
        self._ledger = ledger
        self._ownership = ownership

    async def wallet(self, address: str) -> dict[str, Any]:
        wallet = parse_address(address)
        report = await self._ledger.check_consistency(wallet)
        entries = await self._ledger.entries(wallet, limit=LEDGER_SHOWN)
        projects = []
        for record in await self._ownership.projects_of(wallet, include_deleted=True):
            projects.append(
                {
                    "id": record.project_id,
                    "name": record.unique_name,
                    "displayName": record.display_name,
                    "status": record.status,
                    "created_at_ms": record.created_at_ms,
                    "metered_hour": await self._ledger.metered_hour(wallet, record.project_id),
                    "deployments": list(record.deployments),
                }
            )
        payments = []
        for ref in await self._ledger.wallet_payments(wallet, limit=PAYMENTS_SHOWN):
            chain_id_text, _, tx = ref.partition(":")
            paid = await self._ledger.payment_record(int(chain_id_text), tx, wallet) or {}
            chain = self._settings.chain_by_id(int(chain_id_text))
            amount_micro = int(paid.get("amount_micro", 0))
            payments.append(
                {
                    "chain": chain.name if chain else None,
                    "chain_id": int(chain_id_text),
                    "tx": tx,
                    "amount_usd": micro_to_usd_number(amount_micro),
                    "amount_micro": amount_micro,
                    "status": paid.get("status", "unknown"),
                }
            )
        return {
            "wallet": wallet,
            "credits": micro_to_credits(report.balance_micro),
            "balance_usd": micro_to_usd_number(report.balance_micro),
            "balance_micro": report.balance_micro,
            "ledger_consistent": report.ok,
            "ledger_entries": report.entries,
            "projects": projects,
            "ledger": [entry.as_wire() for entry in entries],
            "payments": payments,
        }

    async def payment(self, chain: str, tx: str) -> dict[str, Any]:
        chain_config = self._settings.require_chain(chain, field="chain")
        tx_hash = canonical_tx_hash(tx.strip())
        if tx_hash is None:
            raise BadRequest(
                "txHash must be 0x followed by 64 hex digits", code="malformed_tx", field="txHash"
            )
        found: list[tuple[str, dict[str, str], str | None]] = []
        for payer in await self._ledger.payers(chain_config.chain_id, tx_hash):
            paid = await self._ledger.payment_record(chain_config.chain_id, tx_hash, payer)
            if paid is not None:  # the index may name a payer whose credit never landed
                state = await self._ledger.claim_state(chain_config.chain_id, tx_hash, payer)
                found.append((payer, paid, state))
        if not found:
            raise NotFound(
                "No payment recorded for this transaction", code="unknown_payment", claim=None
            )
        _, record, claim = found[0]
        rendered = {key: _render_field(key, value) for key, value in sorted(record.items())}
        amount_micro = int(record.get("amount_micro", 0))
        return {
            "chain": chain_config.name,
            "chain_id": chain_config.chain_id,
            "tx": tx_hash,
            "claim": claim,
            "status": record.get("status", "unknown"),
            "amount_usd": micro_to_usd_number(amount_micro),
            "record": rendered,
            # One tx may carry transfers from several payers, each credited on its own.
            "payers": [
                {
                    "wallet": checksum_address(payer),
                    "status": paid.get("status", "unknown"),
                    "amount_usd": micro_to_usd_number(int(paid.get("amount_micro", 0))),
                }
                for payer, paid, _ in found
            ],
        }

    async def adjust(self, address: str, amount_usd: Any, reason: Any) -> dict[str, Any]:
        """Apply a signed adjustment: ``amount_usd`` a decimal string (at most 6 decimals,
        not zero), ``reason`` a non-empty string of at most 500 characters."""
        wallet = parse_address(address)
        if not isinstance(amount_usd, str):
            raise BadRequest(
                'amount_usd must be a decimal string such as "1.50" or "-0.25"',
                code="invalid_amount",
                field="amount_usd",
            )
        try:
            amount_micro = usd_to_micro(amount_usd)
        except ValueError as exc:
            raise BadRequest(
                "amount_usd must be a signed decimal string with at most 6 decimals",
                code="invalid_amount",
                field="amount_usd",
            ) from exc
        if amount_micro == 0:
            raise BadRequest(
                "amount_usd must not be zero", code="invalid_amount", field="amount_usd"
            )
        if not isinstance(reason, str) or not reason.strip():
            raise BadRequest("reason is required", code="missing_reason", field="reason")
        if len(reason) > MAX_REASON_CHARS:
            raise BadRequest(
                f"reason must be at most {MAX_REASON_CHARS} characters",
                code="invalid_reason",
                field="reason",
            )
        applied = await self._ledger.apply(
            wallet, EntryKind.ADJUSTMENT, amount_micro, ref=ADJUSTMENT_REF, reason=reason.strip()
        )
        entry = next(
            (e for e in await self._ledger.entries(wallet, limit=20) if e.seq == applied.seq),
            None,
        )
        return {
            "wallet": wallet,
            "amount_usd": micro_to_usd_number(amount_micro),
            "balance_usd": micro_to_usd_number(applied.balance_micro),
            "credits": micro_to_credits(applied.balance_micro),
            "entry": entry.as_wire() if entry else None,
        }


def _render_field(key: str, value: str) -> Any:
    if key in _ADDRESS_FIELDS and is_address(value):
        return checksum_address(value)
    if key in _INT_FIELDS and value.lstrip("-").isdigit():
        return int(value)
    return value
