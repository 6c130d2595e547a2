"""Typed results of the agent client, parsed from the gateway's JSON at the boundary.

USD figures are ``Decimal`` (JSON numbers are parsed as decimals, never floats); token amounts
are integers in base units. ``from_wire`` constructors raise ``KeyError``/``TypeError``/
``ValueError`` on a malformed body; the client maps those to ``GatewayRefused``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any


def _usd(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        raise TypeError(f"not a USD figure: {value!r}")
    return Decimal(value)


def _optional_usd(value: Any) -> Decimal | None:
    return None if value is None else _usd(value)


@dataclass(frozen=True, slots=True)
class Quote:
    """A 402 "Payment required": what to pay, where, and the wallet's standing."""

    amount_usd: Decimal
    amount_token: int
    pay_to: str
    chain: str
    chain_id: int
    token: str
    decimals: int
    balance_usd: Decimal
    active_projects: int
    warning: str | None = None
    credited_usd: Decimal | None = None

    @property
    def token_amount_usd(self) -> Decimal:
        """``amount_token`` read as USD (stablecoins): what the transfer actually moves."""
        return Decimal(self.amount_token).scaleb(-self.decimals)

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> Quote:
        chain = str(body["payment_chain"])
        chain_ids = {str(c["chain"]): int(c["chain_id"]) for c in body["supported_chains"]}
        return cls(
            amount_usd=_usd(body["amount_usd"]),
            amount_token=int(body["amount_token"]),
            pay_to=str(body["pay_to"]),
            chain=chain,
            chain_id=chain_ids[chain],
            token=str(body["token"]),
            decimals=int(body["decimals"]),
            balance_usd=_usd(body["current_credit_balance_usd"]),
            active_projects=int(body["active_projects"]),
            warning=body.get("warning"),
            credited_usd=_optional_usd(body.get("credited_usd")),
        )


@dataclass(frozen=True, slots=True)
class Payment:
    """A payment this client made (and the gateway was asked to credit): a transfer it sent
    (``tx_hash``), or a gasless authorization (``credential``, the ``PAYMENT-SIGNATURE`` it
    signed) whose settlement tx is known once the gateway answers."""

    chain: str
    token: str
    tx_hash: str
    amount_token: int
    credential: str | None = None
    #: The gateway's signed receipt of the credit, verified against its published key.
    receipt: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        """How messages name it: the tx, or the authorization not yet settled."""
        if self.tx_hash:
            return self.tx_hash
        return "the gasless authorization" if self.credential else "the payment"


@dataclass(frozen=True, slots=True)
class DeployStarted:
    """``200`` of a deploy or redeploy: the upstream deployment exists and is building."""

    project_id: str
    deployment_id: str
    message: str
    payment: Payment | None = None
    replayed: bool = False  # an Idempotency-Key replay of an earlier answer

    @classmethod
    def from_wire(
        cls, body: dict[str, Any], payment: Payment | None, *, replayed: bool
    ) -> DeployStarted:
        return cls(
            project_id=str(body["projectId"]),
            deployment_id=str(body["deploymentId"]),
            message=str(body.get("message", "")),
            payment=payment,
            replayed=replayed,
        )


@dataclass(frozen=True, slots=True)
class DeploymentStatus:
    """``ready`` (with ``endpoint``), ``deploying`` or ``failed`` (with ``reason``)."""

    status: str
    deployment_id: str
    endpoint: str | None = None
    deployment_status: str | None = None
    message: str | None = None
    reason: str | None = None  # for a build error: the last build-log lines

    @property
    def finished(self) -> bool:
        return self.status in ("ready", "failed")

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> DeploymentStatus:
        return cls(
            status=str(body["status"]),
            deployment_id=str(body["deployment_id"]),
            endpoint=body.get("endpoint"),
            deployment_status=body.get("deployment_status"),
            message=body.get("message"),
            reason=body.get("reason"),
        )


@dataclass(frozen=True, slots=True)
class Deployment:
    """A finished deploy: what started it and its final status (``ready``: ``url`` is live)."""

    started: DeployStarted
    status: DeploymentStatus

    @property
    def url(self) -> str | None:
        return self.status.endpoint


@dataclass(frozen=True, slots=True)
class Project:
    id: str
    name: str
    display_name: str
    status: str
    url: str | None
    created_at: str | None

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> Project:
        return cls(
            id=str(body["id"]),
            name=str(body["name"]),
            display_name=str(body.get("displayName") or body["name"]),
            status=str(body["status"]),
            url=body.get("url"),
            created_at=body.get("createdAt"),
        )


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    seq: int
    ts_ms: int
    kind: str
    amount_usd: Decimal
    balance_usd: Decimal
    ref: str | None
    reason: str | None

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> LedgerEntry:
        return cls(
            seq=int(body["seq"]),
            ts_ms=int(body["ts"]),
            kind=str(body["kind"]),
            amount_usd=_usd(body["amount_usd"]),
            balance_usd=_usd(body["balance_usd"]),
            ref=body.get("ref"),
            reason=body.get("reason"),
        )


@dataclass(frozen=True, slots=True)
class Credits:
    """``GET /agent/credits``: balance, burn and runway, newest ledger entries first."""

    wallet: str
    credits: Decimal
    balance_usd: Decimal
    active_projects: int
    burn_usd_per_hour: Decimal
    runway_hours: Decimal | None
    ledger: tuple[LedgerEntry, ...] = field(default=())

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> Credits:
        return cls(
            wallet=str(body["wallet"]),
            credits=_usd(body["credits"]),
            balance_usd=_usd(body["balance_usd"]),
            active_projects=int(body["active_projects"]),
            burn_usd_per_hour=_usd(body["burn_usd_per_hour"]),
            runway_hours=_optional_usd(body.get("runway_hours")),
            ledger=tuple(LedgerEntry.from_wire(e) for e in body.get("ledger", [])),
        )


@dataclass(frozen=True, slots=True)
class TopUp:
    """``POST /agent/credits/topup``: what the payment credited and the new balance.
    ``credited_earlier``: an earlier attempt, whose answer was lost, had credited it."""

    payment: Payment
    credited_usd: Decimal
    balance_usd: Decimal
    credited_earlier: bool = False

    @classmethod
    def from_wire(cls, body: dict[str, Any], payment: Payment) -> TopUp:
        return cls(
            payment=payment,
            credited_usd=_usd(body["credited_usd"]),
            balance_usd=_usd(body["balance_usd"]),
        )


@dataclass(frozen=True, slots=True)
class LogLine:
    line_number: int
    text: str
    stage: str | None


@dataclass(frozen=True, slots=True)
class Logs:
    """Build log lines (``kind="build"``) or the runtime log text (``kind="runtime"``)."""

    kind: str
    deployment_id: str
    lines: tuple[LogLine, ...] = ()
    text: str = ""

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> Logs:
        lines = tuple(
            LogLine(int(line["lineNumber"]), str(line["log"]), line.get("stage"))
            for line in body.get("lines", [])
        )
        return cls(
            kind=str(body["kind"]),
            deployment_id=str(body["deployment_id"]),
            lines=lines,
            text=str(body.get("text", "")),
        )


@dataclass(frozen=True, slots=True)
class Progress:
    """One step of a deploy, for a progress display. ``stage`` is one of ``quote``,
    ``paying``, ``sent``, ``confirmed``, ``submitting``, ``pending``, ``retrying``,
    ``credits``, ``started``, ``building``, ``ready``, ``failed``."""

    stage: str
    message: str
    tx: str | None = None
    quote: Quote | None = None
    status: DeploymentStatus | None = None
