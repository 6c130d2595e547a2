"""Prometheus instruments of one gateway app (``GET /metrics``).

The only importer of ``prometheus_client``. Each ``GatewayMetrics`` owns its own
``CollectorRegistry``, so several apps in one process (tests, benchmarks) never share or clash
over series. ``create_app`` builds one and hands it to every collaborator that records events
(constructor injection); a collaborator built without one gets a private, unexposed instance.

Series (every name starts with ``gateway_``; labels are bounded sets, never raw input):

- payment funnel: ``quotes_issued_total{chain,token}``, ``payments_seen_total{chain}``,
  ``payments_verified_total{chain,token}``, ``payments_pending_total{chain,status}``
  (status: pending, not_found, in_progress), ``payments_rejected_total{chain,reason}``,
  ``payments_conflict_total{chain}`` (the 409 "already processed"),
  ``payments_unavailable_total{chain}`` (503: RPC down or verification timed out),
  ``credits_added_micro_usd_total{chain,token}``, ``payment_reversals_total{chain}`` and
  ``reversed_micro_usd_total{chain}``;
- ``name_checks_total{source}``: every name check of a deploy; source ``createos`` (asked) or
  ``remembered`` (an unpaid quote answered from CreateOS's answer of the last few seconds);
- ``deploys_total{kind,outcome}``: kind deploy|redeploy; outcome started, payment_required,
  conflict, rejected, upstream_failed, unavailable, error;
- ``upstream_request_seconds{endpoint}`` (histogram) and ``upstream_errors_total{endpoint,kind}``,
  one observation per HTTP attempt to CreateOS; ``endpoint`` is ``METHOD /path`` with ids
  replaced by ``{id}``;
- ``rpc_request_seconds{chain,operation}`` (histogram) and ``rpc_errors_total{chain,operation}``,
  one observation per RPC URL tried;
- ``rate_limited_total{scope}``: 429s; scope ``authenticated`` (counted with the nonce),
  ``request`` (counted alone: public ``/agent/*`` routes and failed authentications) or
  ``failed_auth`` (the client IP's budget of failed authentications is spent);
- gasless settlement: ``settlements_total{chain,outcome}`` (settled, foreign, reverted),
  ``settlement_gas_wei_total{chain}`` (what the settler paid in gas) and the gauge
  ``settler_gas_wei{chain}`` (its balance when last read);
- ``metering_runs_total{outcome}``: for the metering loop to call through ``metering_run``
  (outcome a short code such as ok, not_leader, failed); ``{outcome="ok"}`` is exported at 0
  until the first call, so dashboards and alerts can be written before metering lands.
"""

from __future__ import annotations

import re

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

#: The Content-Type of ``render()``.
CONTENT_TYPE = CONTENT_TYPE_LATEST

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)

#: Path segments of the CreateOS API kept verbatim in the ``endpoint`` label; any other
#: segment is an id and becomes ``{id}``, so label values stay a small fixed set.
_UPSTREAM_LITERALS = frozenset(
    {
        "v1",
        "projects",
        "available-unique-name",
        "deployments",
        "upload-zip",
        "files",
        "base64",
        "build-logs",
        "deployment-logs",
        "suspend",
        "unsuspend",
        "quotas",
    }
)
_LABEL_RE = re.compile(r"^[a-z0-9_]{1,48}$")


def upstream_endpoint(method: str, path: str) -> str:
    """The ``endpoint`` label: ``GET /projects/{id}`` for ``GET /projects/p-1``."""
    segments = [
        s if s in _UPSTREAM_LITERALS else "{id}" for s in path.split("?", 1)[0].split("/") if s
    ]
    return f"{method.upper()} /" + "/".join(segments)


def label(value: str | None, fallback: str = "other") -> str:
    """A label value from a code or name we produced: kept when it is a short lowercase token,
    else ``fallback`` (never user text of unbounded variety)."""
    if value is not None and _LABEL_RE.match(value):
        return value
    return fallback


#: The ``event`` label values of ``gateway_reconcile_total``.
RECONCILE_EVENTS = ("found", "credited", "reversed", "adopted", "unowned", "compacted")


class GatewayMetrics:
    """Every instrument of one app, with one method per event (the call sites read as events)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.quotes_issued = Counter(
            "gateway_quotes_issued_total", "402 quotes issued", ["chain", "token"], registry=r
        )
        self.payments_seen = Counter(
            "gateway_payments_seen_total", "X-Payment-Tx submissions", ["chain"], registry=r
        )
        self.name_checks = Counter(
            "gateway_name_checks_total",
            "Deploy name checks, asked of CreateOS or answered from its recent answer",
            ["source"],
            registry=r,
        )
        self.payments_verified = Counter(
            "gateway_payments_verified_total",
            "Payments verified and credited",
            ["chain", "token"],
            registry=r,
        )
        self.payments_pending = Counter(
            "gateway_payments_pending_total",
            "Payments answered with a pending-style 402",
            ["chain", "status"],
            registry=r,
        )
        self.payments_rejected = Counter(
            "gateway_payments_rejected_total",
            "Payments rejected (402 verification failed, 400 malformed)",
            ["chain", "reason"],
            registry=r,
        )
        self.payments_conflict = Counter(
            "gateway_payments_conflict_total",
            "409 Payment already processed",
            ["chain"],
            registry=r,
        )
        self.payments_unavailable = Counter(
            "gateway_payments_unavailable_total",
            "Payments not verified because no RPC answered or verification timed out (503)",
            ["chain"],
            registry=r,
        )
        self.credits_added = Counter(
            "gateway_credits_added_micro_usd_total",
            "Micro-USD credited from verified payments",
            ["chain", "token"],
            registry=r,
        )
        self.reversals = Counter(
            "gateway_payment_reversals_total",
            "Credited payments reversed after a reorg",
            ["chain"],
            registry=r,
        )
        self.reversed_micro = Counter(
            "gateway_reversed_micro_usd_total",
            "Micro-USD taken back by reversals",
            ["chain"],
            registry=r,
        )
        self.deploys = Counter(
            "gateway_deploys_total", "Deploy requests by outcome", ["kind", "outcome"], registry=r
        )
        self.upstream_seconds = Histogram(
            "gateway_upstream_request_seconds",
            "CreateOS HTTP attempts",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_errors = Counter(
            "gateway_upstream_errors_total",
            "CreateOS HTTP attempts that failed",
            ["endpoint", "kind"],
            registry=r,
        )
        self.rpc_seconds = Histogram(
            "gateway_rpc_request_seconds",
            "JSON-RPC calls, one per URL tried",
            ["chain", "operation"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.rpc_errors = Counter(
            "gateway_rpc_errors_total",
            "JSON-RPC calls that failed on one URL",
            ["chain", "operation"],
            registry=r,
        )
        self.rate_limited = Counter(
            "gateway_rate_limited_total", "Requests answered 429", ["scope"], registry=r
        )
        self.metering_runs = Counter(
            "gateway_metering_runs_total", "Metering rounds by outcome", ["outcome"], registry=r
        )
        self.metering_runs.labels("ok")
        self.settlements = Counter(
            "gateway_settlements_total",
            "Gasless settlements finished, by outcome",
            ["chain", "outcome"],
            registry=r,
        )
        self.settlement_gas = Counter(
            "gateway_settlement_gas_wei_total",
            "Gas paid by the settler for settlements, in wei",
            ["chain"],
            registry=r,
        )
        self.settler_gas = Gauge(
            "gateway_settler_gas_wei",
            "The settler account's native balance when last read, in wei",
            ["chain"],
            registry=r,
        )
        self.reconcile_events = Counter(
            "gateway_reconcile_total",
            "What reconciler passes found and did: found (unclaimed transfers seen), credited, "
            "reversed (credits without their transfer), adopted (CreateOS projects without a "
            "record), unowned (such projects no wallet can be named for), compacted (ledger "
            "entries archived)",
            ["event"],
            registry=r,
        )
        for event in RECONCILE_EVENTS:
            self.reconcile_events.labels(event)
        self.reconcile_passes = Counter(
            "gateway_reconcile_passes_total",
            "Reconciliation passes this process ran (only the lease holder runs them)",
            registry=r,
        )

    # --- payment funnel ---------------------------------------------------------------------

    def quote_issued(self, chain: str, token: str) -> None:
        self.quotes_issued.labels(label(chain), label(token)).inc()

    def name_checked(self, *, remembered: bool) -> None:
        self.name_checks.labels("remembered" if remembered else "createos").inc()

    def payment_seen(self, chain: str) -> None:
        self.payments_seen.labels(label(chain)).inc()

    def payment_verified(self, chain: str, token: str, amount_micro: int) -> None:
        self.payments_verified.labels(label(chain), label(token)).inc()
        self.credits_added.labels(label(chain), label(token)).inc(amount_micro)

    def payment_pending(self, chain: str, status: str) -> None:
        self.payments_pending.labels(label(chain), label(status)).inc()

    def payment_rejected(self, chain: str, reason: str) -> None:
        self.payments_rejected.labels(label(chain), label(reason)).inc()

    def payment_conflict(self, chain: str) -> None:
        self.payments_conflict.labels(label(chain)).inc()

    def payment_unavailable(self, chain: str) -> None:
        self.payments_unavailable.labels(label(chain)).inc()

    def payment_reversed(self, chain: str, amount_micro: int) -> None:
        self.reversals.labels(label(chain)).inc()
        self.reversed_micro.labels(label(chain)).inc(max(0, amount_micro))

    # --- the rest ---------------------------------------------------------------------------

    def deploy_finished(self, kind: str, outcome: str) -> None:
        self.deploys.labels(label(kind), label(outcome)).inc()

    def upstream_attempt(self, endpoint: str, seconds: float, error_kind: str | None) -> None:
        """One HTTP attempt to CreateOS; ``endpoint`` from ``upstream_endpoint``."""
        self.upstream_seconds.labels(endpoint).observe(seconds)
        if error_kind is not None:
            self.upstream_errors.labels(endpoint, label(error_kind)).inc()

    def rpc_attempt(self, chain: str, operation: str, seconds: float, *, failed: bool) -> None:
        self.rpc_seconds.labels(label(chain), label(operation)).observe(seconds)
        if failed:
            self.rpc_errors.labels(label(chain), label(operation)).inc()

    def request_rate_limited(self, scope: str) -> None:
        self.rate_limited.labels(label(scope)).inc()

    def settlement_finished(self, chain: str, outcome: str, gas_wei: int) -> None:
        self.settlements.labels(label(chain), label(outcome)).inc()
        if gas_wei > 0:
            self.settlement_gas.labels(label(chain)).inc(gas_wei)

    def settler_balance(self, chain: str, wei: int) -> None:
        self.settler_gas.labels(label(chain)).set(wei)

    def metering_run(self, outcome: str) -> None:
        """For the metering loop: one round finished with ``outcome`` (a short code)."""
        self.metering_runs.labels(label(outcome)).inc()

    def reconcile_pass(self) -> None:
        self.reconcile_passes.inc()

    def reconciled(self, event: str, count: int = 1) -> None:
        """For the reconciler: ``count`` events of one of ``RECONCILE_EVENTS``."""
        if count > 0:
            self.reconcile_events.labels(label(event)).inc(count)

    def render(self) -> bytes:
        """The Prometheus text exposition of this app's series."""
        return bytes(generate_latest(self.registry))
