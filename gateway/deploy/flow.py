"""The paid deploy flow (docs/PROTOCOL.md section 4), top to bottom.

    validate (web layer, ``gateway.deploy.validation``) -> lock (wallet, name) -> name free?
    -> quote -> verify and credit the payment, if any -> decide on credits
    -> create the project (or adopt the half-made one) -> upload (or adopt the deployment)
    -> record project -> wallet -> 200 "deploying"

Invariants:

- Nothing costs money before the request is known to be deployable: the body is validated and
  the name checked before the quote; a payment is credited before any upstream write.
- Credits are not debited here: metering burns them hourly. The decision only requires
  ``balance >= quote`` (and, when other projects share the credits, the opt-in header or a
  payment credited by this very request: a paid request is never asked to pay again).
- No lost money: after a payment, every upstream failure answers 502 (503 + Retry-After when
  CreateOS throttles) with the balance and "retry without payment headers".
- No double work: each step is written to the attempt record *before* its upstream call
  (``gateway.deploy.attempts``), under a per-(wallet, name) lock. A retry adopts what the
  failed attempt made: its project (from the record, or found by name after an ambiguous
  create) and its deployment (listed after an ambiguous upload: one not among the project's
  deployments from before the upload). Only after a definite failure is the step rolled back.
- No orphan from a failed create: a definite failure created nothing; an ambiguous one is
  recovered by name at once (and again on the retry); a project we created but cannot record
  (storage down) is deleted upstream again.
- Names: a name held by another wallet (``name_owner``) or taken upstream (and not by this
  wallet's half-made project) is a 409 before any payment; right before the create the name
  is claimed atomically, so two wallets racing for it cannot both create it. A request
  without payment may be quoted on CreateOS's answer of the last few seconds
  (``QuotedNames``); a paid one, or one deploying on credits, asks CreateOS itself.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import io
import logging
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeGuard, TypeVar

from gateway.config import Settings
from gateway.deploy.attempts import (
    ATTEMPT_TTL_MS,
    Attempt,
    DeployAttempts,
    DeployLocks,
    Held,
    Step,
)
from gateway.deploy.quoted_names import QuotedNames
from gateway.deploy.validation import (
    DeployRequest,
    FilesUpload,
    RedeployRequest,
    Upload,
    UploadFile,
)
from gateway.errors import (
    Conflict,
    GatewayError,
    PaymentRequired,
    Unavailable,
    UpstreamFailed,
)
from gateway.headers import RETRY_AFTER
from gateway.metrics import GatewayMetrics
from gateway.payments.gasless import GaslessPaid, GaslessPayments, refusal
from gateway.payments.protocols import BoundPayment, Credential, RequestContext
from gateway.payments.quote import (
    DeployOnCredits,
    Quote,
    QuoteRequired,
    decide,
    make_quote,
    quote_required_error,
)
from gateway.payments.service import PaymentCredited
from gateway.projects.records import NameClaims, NameOutcome, Ownership, ProjectStatus
from gateway.store import Store
from gateway.types import Clock, Wallet, micro_to_usd_number, micro_to_usd_string, system_clock
from gateway.upstream import (
    MAX_FILES_PER_UPLOAD,
    Deployment,
    Project,
    UpstreamError,
    UpstreamNameTaken,
    UpstreamNotFound,
    UpstreamThrottled,
)

log = logging.getLogger("gateway.deploy")

STARTED_MESSAGE = "Deployment started. Poll status for updates."
GATEWAY_ZIP_NAME = "app.zip"

_T = TypeVar("_T")


class Upstream(Protocol):
    """The CreateOS calls the flow makes (``gateway.upstream.CreateOSClient`` satisfies it)."""

    async def is_name_available(self, unique_name: str) -> bool: ...

    async def create_project(
        self,
        *,
        unique_name: str,
        display_name: str,
        description: str | None,
        settings: Mapping[str, Any],
    ) -> str: ...

    async def find_project_by_name(self, unique_name: str) -> Project | None: ...

    async def upload_files_base64(
        self, project_id: str, files: Sequence[tuple[str, str]]
    ) -> str: ...

    async def upload_zip(self, project_id: str, zip_bytes: bytes, filename: str = ...) -> str: ...

    async def list_deployments(self, project_id: str) -> list[Deployment]: ...

    async def delete_project(self, project_id: str) -> None: ...


class Payments(Protocol):
    """Verifies and credits ``X-Payment-Tx`` (``gateway.payments.service.PaymentService``)."""

    async def accept(
        self,
        wallet: Wallet,
        *,
        tx: str,
        chain: str | None,
        token: str | None,
        before_credit: Callable[[], Awaitable[None]] | None = None,
    ) -> PaymentCredited: ...


@dataclass(frozen=True, slots=True)
class PaymentHeaders:
    """What the agent sent about paying: ``X-Payment-Tx``/``-Chain``/``-Token``,
    ``X-Use-Existing-Credits: true``, or a protocol ``credential`` (MPP or x402, at most one
    of it and ``tx``) with the ``context`` its challenges are bound to."""

    tx: str | None = None
    chain: str | None = None
    token: str | None = None
    use_existing_credits: bool = False
    credential: Credential | None = None
    context: RequestContext | None = None


@dataclass(frozen=True, slots=True)
class Deployed:
    """A deployment started. ``warning`` when it runs on credits shared with other projects."""

    project_id: str
    deployment_id: str
    warning: str | None = None
    #: The wallet it was deployed for (a protocol payment without wallet headers names it).
    wallet: str = ""
    #: The payment this request credited, if any; ``gasless`` when it was a protocol payment.
    credited: PaymentCredited | None = None
    gasless: BoundPayment | None = None

    def as_wire(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "projectId": self.project_id,
            "deploymentId": self.deployment_id,
            "status": "deploying",
            "message": STARTED_MESSAGE,
        }
        if self.warning:
            body["message"] = f"{STARTED_MESSAGE} Warning: {self.warning}"
            body["warning"] = self.warning
        return body


@dataclass(frozen=True, slots=True)
class _Money:
    """The wallet's money as of the decision, for the answers after it."""

    balance_micro: int
    credited_micro: int | None

    def fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"balance_usd": micro_to_usd_number(self.balance_micro)}
        if self.credited_micro is not None:
            fields["credited_usd"] = micro_to_usd_number(self.credited_micro)
        return fields

    def retry_advice(self) -> str:
        balance = micro_to_usd_string(self.balance_micro)
        if self.credited_micro is not None:
            return f"your payment is credited (balance ${balance}). Retry without payment headers."
        return f"nothing was charged (balance ${balance}). Retry the same request."


def name_taken(**fields: Any) -> Conflict:
    return Conflict("Project name already taken", code="name_taken", **fields)


class DeployFlow:
    """``deploy`` (a new project) and ``redeploy`` (new code into an owned project)."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        upstream: Upstream,
        payments: Payments,
        ownership: Ownership,
        clock: Clock = system_clock,
        metrics: GatewayMetrics | None = None,
        gasless: GaslessPayments | None = None,
    ) -> None:
        self._metrics = metrics or GatewayMetrics()
        self._gasless = gasless
        self._settings = settings
        self._upstream = upstream
        self._payments = payments
        self._ownership = ownership
        self._attempts = DeployAttempts(store, clock=clock)
        self._locks = DeployLocks(store, ttl_ms=deploy_lock_ttl_ms(settings))
        self._names = NameClaims(store)
        self._quoted = QuotedNames(settings.quote_name_seconds, clock=clock)
        self._store = store

    # --- the two stories ------------------------------------------------------------------

    async def deploy(
        self, wallet: Wallet | None, request: DeployRequest, payment: PaymentHeaders
    ) -> Deployed:
        """docs/PROTOCOL.md section 4 after validation. Raises the 409/402/400/502/503 of the
        module doc. ``wallet`` None: the request carried no wallet-signature headers; a
        protocol credential's verified payer is then the wallet, and without one the answer
        is the 402 quote (credits unknown).

        Every call is counted once in ``deploys_total{kind="deploy",outcome}``."""
        # Durable: CreateOS acts, and the 200 answers, only on writes the replicas hold.
        with self._store.durable():
            async with self._counted("deploy"):
                return await self._deploy(wallet, request, payment)

    async def redeploy(
        self,
        wallet: Wallet | None,
        project_id: str,
        request: RedeployRequest,
        payment: PaymentHeaders,
    ) -> Deployed:
        """New code into a project the wallet owns: 404/403 first, paid like a deploy, but the
        project itself does not count as another project sharing the credits.

        Every call is counted once in ``deploys_total{kind="redeploy",outcome}``."""
        with self._store.durable():
            async with self._counted("redeploy"):
                return await self._redeploy(wallet, project_id, request, payment)

    @contextlib.asynccontextmanager
    async def _counted(self, kind: str) -> AsyncIterator[None]:
        try:
            yield
        except BaseException as exc:
            self._metrics.deploy_finished(kind, deploy_outcome(exc))
            raise
        self._metrics.deploy_finished(kind, "started")

    async def _deploy(
        self, wallet: Wallet | None, request: DeployRequest, payment: PaymentHeaders
    ) -> Deployed:
        name = request.unique_name
        quote = make_quote(
            self._settings, months=request.months, chain=payment.chain, token=payment.token
        )
        bound = await self._bind(payment, quote)
        if wallet is None and bound is None:
            await self._check_name_free(None, name, None, quote_only=True)
            raise self._quote_for_anyone(quote)
        if bound is not None:
            wallet, bound = await self._payer(bound, wallet, quote)
        assert wallet is not None
        async with self._locks.hold(wallet.address, name) as held:
            attempt = held.attempt
            if attempt is not None and attempt.kind != "deploy":
                attempt = None
            recalled = False
            if bound is None and payment.tx is None:
                # No payment: the answer is a quote unless the credits cover the deploy.
                recalled = await self._check_name_free(wallet, name, attempt, quote_only=True)
                credited = None
            else:
                credited = await self._accept_payment(
                    wallet,
                    payment,
                    quote,
                    bound,
                    name_check=self._check_name_free(wallet, name, attempt),
                )
            decision, money = await self._decide(
                wallet, quote, payment, credited, held, itself=False
            )
            if recalled:  # deploying on credits: a remembered answer served quotes only
                await self._name_free_upstream(name)
            async with self._answering_upstream_failures(money):
                project_id, announced = await self._create_or_adopt(wallet, request, attempt, money)
                deployment_id = await self._upload_or_adopt(
                    wallet,
                    name,
                    "deploy",
                    project_id,
                    request.upload,
                    attempt,
                    known=(),
                    announced=announced,
                )
            await self._ownership.record_project(
                wallet.address,
                project_id,
                unique_name=name,
                display_name=request.display_name,
                deployment_id=deployment_id,
            )
            held.finished()  # the lock's release forgets the attempt
        log.info(
            "deploy started",
            extra={"wallet": wallet.address, "project": project_id, "deployment": deployment_id},
        )
        return _deployed(wallet, project_id, deployment_id, decision, credited)

    async def _redeploy(
        self,
        wallet: Wallet | None,
        project_id: str,
        request: RedeployRequest,
        payment: PaymentHeaders,
    ) -> Deployed:
        quote = make_quote(
            self._settings, months=request.months, chain=payment.chain, token=payment.token
        )
        bound = await self._bind(payment, quote)
        if wallet is None and bound is None:
            await self._ownership.require_project(project_id)
            raise self._quote_for_anyone(quote)
        if bound is not None:
            wallet, bound = await self._payer(bound, wallet, quote)
        assert wallet is not None
        record = await self._ownership.require_owner(project_id, wallet.address)
        name = record.unique_name
        async with self._locks.hold(wallet.address, name) as held:
            record = await self._ownership.require_owner(project_id, wallet.address)
            if record.status == ProjectStatus.SUSPENDED.value:
                raise Conflict(
                    "This project is suspended for lack of credits; top up "
                    "(POST /agent/credits/topup) and it resumes, then deploy again",
                    code="project_suspended",
                )
            attempt = held.attempt
            if attempt is not None and (
                attempt.kind != "redeploy" or attempt.project_id != project_id
            ):
                attempt = None
            credited = await self._accept_payment(wallet, payment, quote, bound)
            decision, money = await self._decide(
                wallet, quote, payment, credited, held, itself=True
            )
            async with self._answering_upstream_failures(money):
                deployment_id = await self._upload_or_adopt(
                    wallet,
                    name,
                    "redeploy",
                    project_id,
                    request.upload,
                    attempt,
                    known=record.deployments,
                )
            await self._ownership.add_deployment(project_id, deployment_id)
            held.finished()
        log.info(
            "redeploy started",
            extra={"wallet": wallet.address, "project": project_id, "deployment": deployment_id},
        )
        return _deployed(wallet, project_id, deployment_id, decision, credited)

    # --- before any money moves -----------------------------------------------------------

    async def _bind(self, payment: PaymentHeaders, quote: Quote) -> BoundPayment | None:
        """The protocol credential, if any, checked against this request's offers (402 with
        fresh challenges when it does not match: nothing was sent)."""
        if payment.credential is None:
            return None
        if self._gasless is None or payment.context is None:
            raise refusal("not_offered", "This gateway does not settle gasless payments")
        try:
            return await self._gasless.bind(
                payment.credential,
                payment.context,
                amount_micro=quote.amount_micro,
                preferred_chain=quote.chain.name,
            )
        except PaymentRequired as refused:
            raise refused.offering(quote.amount_micro, quote.chain.name) from None

    async def _payer(
        self, bound: BoundPayment, wallet: Wallet | None, quote: Quote
    ) -> tuple[Wallet, BoundPayment]:
        """The request's wallet: ``wallet`` (the payer is checked to be it when settling) or,
        without wallet headers, the payer once its signature is proved. The payer takes the
        credential's challenge here, before the name check, so a challenge used by another
        payer is refused whatever else is true of the request."""
        assert self._gasless is not None
        try:
            if wallet is None:
                bound = await self._gasless.payer(bound)
                wallet = Wallet(bound.authorization.payer)
            await self._gasless.use_challenge(bound)
        except PaymentRequired as refused:
            raise refused.offering(quote.amount_micro, quote.chain.name) from None
        return wallet, bound

    def _quote_for_anyone(self, quote: Quote) -> PaymentRequired:
        """The 402 for a request with neither wallet headers nor payment: the price, with the
        wallet's credits unknown (a stock client learns what to pay from it)."""
        self._metrics.quote_issued(quote.chain.name, quote.token.key)
        return quote_required_error(
            QuoteRequired(quote=quote, balance_micro=None, active_projects=None),
            self._settings,
        )

    async def _check_name_free(
        self,
        wallet: Wallet | None,
        name: str,
        attempt: Attempt | None,
        *,
        quote_only: bool = False,
    ) -> bool:
        """409 unless the name is free upstream or held by this wallet's half-made project
        (``wallet`` None: free upstream and held by nobody here). ``quote_only``: the request
        carries no payment, so CreateOS's answer of the last few seconds may serve
        (``QuotedNames``); True when it did, and the caller asks again before creating."""
        owner = await self._names.owner(name)
        if owner is not None and (wallet is None or owner != wallet.lower):
            raise name_taken()
        if wallet is not None and owner == wallet.lower:
            for record in await self._ownership.projects_of(wallet.address):
                if record.unique_name == name:
                    raise name_taken(
                        projectId=record.project_id,
                        hint=f"You own this project: POST /agent/projects/{record.project_id}"
                        "/deploy deploys new code into it",
                    )
        if attempt is not None and (attempt.project_id or attempt.step is Step.CREATING):
            return False  # our own half-made project holds the name; it is adopted below
        if quote_only:
            remembered = self._quoted.recall(name)
            if remembered is not None:
                self._metrics.name_checked(remembered=True)
                if not remembered:
                    raise name_taken()
                return True
        await self._name_free_upstream(name)
        return False

    async def _name_free_upstream(self, name: str) -> None:
        """409 unless CreateOS says the name is free now; its answer is remembered for quotes."""
        available = await self._upstream.is_name_available(name)
        self._metrics.name_checked(remembered=False)
        self._quoted.remember(name, available)
        if not available:
            raise name_taken()

    async def _accept_payment(
        self,
        wallet: Wallet,
        payment: PaymentHeaders,
        quote: Quote,
        bound: BoundPayment | None,
        *,
        name_check: Coroutine[Any, Any, object] | None = None,
    ) -> PaymentCredited | GaslessPaid | None:
        """Verify and credit the payment, if any. With ``name_check`` (a deploy), the check runs
        concurrently with the verification's RPC calls (they need nothing from each other: on
        a real network this saves the longer of the two), but the payment is credited only
        once the name is known free: a 409 leaves the tx unclaimed, as if the name had been
        checked first, and takes precedence over the payment's own refusal.

        A protocol payment (``bound``) is settled only after the name check: settling sends a
        transaction, and nothing costs money before the request is known deployable."""
        if bound is not None:
            assert self._gasless is not None
            if name_check is not None:
                await name_check
            try:
                return await self._gasless.settle(bound, wallet)
            except PaymentRequired as refused:
                if refused.fields.get("settlement") == "refused":
                    raise refused.offering(quote.amount_micro, quote.chain.name) from None
                raise
        if payment.tx is None:
            return None  # a redeploy without payment (a deploy's name check is its own)
        if name_check is None:
            return await self._payments.accept(
                wallet, tx=payment.tx, chain=payment.chain, token=payment.token
            )
        checked = asyncio.ensure_future(name_check)

        async def name_is_free() -> None:
            await checked

        try:
            credited = await self._payments.accept(
                wallet,
                tx=payment.tx,
                chain=payment.chain,
                token=payment.token,
                before_credit=name_is_free,
            )
        except GatewayError:
            await checked  # a taken name is the answer, as when it was checked first
            raise
        finally:
            if not checked.done():
                checked.cancel()
                with contextlib.suppress(asyncio.CancelledError, GatewayError):
                    await checked
        return credited

    async def _decide(
        self,
        wallet: Wallet,
        quote: Quote,
        payment: PaymentHeaders,
        paid: PaymentCredited | GaslessPaid | None,
        held: Held,
        *,
        itself: bool,
    ) -> tuple[DeployOnCredits, _Money]:
        """Deploy on credits, or raise the 402 quote. A payment credited by this request opts
        in to credits shared with other projects, and a 402 after it asks only the shortfall
        (``decide``). ``itself``: the project being deployed is already one of the wallet's
        active projects (a redeploy) and is not counted. A protocol payment that covers the
        quote deploys with no sharing warning: the client paid the price it was asked.

        The projects are those whose ids were read with the lock (``held``), and without a
        payment the balance too; after a payment, the credit's own balance. A project of
        another name this wallet finished deploying since the lock is not counted: as with one
        finishing between this decision and the create, the race only moves the sharing
        warning, since a request that credited a payment opts in to sharing anyway."""
        credited = paid.credited if isinstance(paid, GaslessPaid) else paid
        balance = held.balance_micro if credited is None else credited.balance_micro
        active = await self._ownership.active_count(wallet.address, among=held.project_ids)
        if itself:
            active = max(0, active - 1)
        credited_micro = None if credited is None else credited.amount_micro
        decision = decide(
            balance,
            active,
            quote,
            opt_in=payment.use_existing_credits,
            credited_micro=credited_micro,
        )
        if isinstance(decision, QuoteRequired):
            self._metrics.quote_issued(quote.chain.name, quote.token.key)
            raise quote_required_error(decision, self._settings)
        if isinstance(paid, GaslessPaid):
            decision = DeployOnCredits(warning=None)
        return decision, _Money(balance, credited_micro)

    # --- upstream writes, each one recorded before it is sent -----------------------------

    async def _create_or_adopt(
        self, wallet: Wallet, request: DeployRequest, attempt: Attempt | None, money: _Money
    ) -> tuple[str, bool]:
        """The project id: the half-made one of an earlier attempt, or a new one; and whether
        the attempt record already announces its upload (a project made or found just now is
        recorded with step "uploading" in the same write, ``_adopt_project``)."""
        name = request.unique_name
        if attempt is not None and attempt.project_id:
            return attempt.project_id, False
        claim = await self._names.claim(wallet.address, name, ttl_ms=ATTEMPT_TTL_MS)
        if claim is NameOutcome.TAKEN:
            raise name_taken(**money.fields())
        if attempt is not None and attempt.step is Step.CREATING:
            found = await self._upstream.find_project_by_name(name)
            if _adoptable(found):
                return await self._adopt_project(wallet, name, found.id), True

        await self._attempts.record(wallet.address, name, kind="deploy", step=Step.CREATING)
        try:
            project_id = await self._upstream.create_project(
                unique_name=name,
                display_name=request.display_name,
                description=request.description,
                settings=request.settings,
            )
        except UpstreamNameTaken as exc:
            # Taken between our check and the create, by someone outside this gateway.
            await self._forget_attempt(wallet, name)
            raise name_taken(**money.fields()) from exc
        except UpstreamError as exc:
            if not exc.may_have_applied:
                await self._forget_attempt(wallet, name)
                raise
            found = await self._read_or_none(self._upstream.find_project_by_name(name))
            if not _adoptable(found):
                raise  # the step stays "creating": the retry looks again before creating
            project_id = found.id
        return await self._adopt_project(wallet, name, project_id), True

    async def _adopt_project(self, wallet: Wallet, name: str, project_id: str) -> str:
        """Record the project in the attempt, and its upload as under way in the same write
        (it is sent next; should this process die before sending it, the retry lists the
        project's deployments, finds none of its own and uploads: one read on a rare path,
        where a separate "created" write would cost a round trip on every deploy). If even
        that write fails, delete the project upstream so none exists that nobody knows about."""
        try:
            await self._attempts.record(
                wallet.address,
                name,
                kind="deploy",
                step=Step.UPLOADING,
                project_id=project_id,
                known_deployments=(),
            )
        except Exception:  # storage down, most likely: nobody would ever find this project
            with contextlib.suppress(GatewayError):
                await self._upstream.delete_project(project_id)
            with contextlib.suppress(Exception):
                await self._forget_attempt(wallet, name)
            raise
        return project_id

    async def _forget_attempt(self, wallet: Wallet, name: str) -> None:
        """After a definite create failure: nothing exists upstream, so nothing to remember."""
        await self._attempts.forget(wallet.address, name)
        await self._names.release(wallet.address, name)

    async def _upload_or_adopt(
        self,
        wallet: Wallet,
        name: str,
        kind: str,
        project_id: str,
        upload: Upload,
        attempt: Attempt | None,
        *,
        known: tuple[str, ...],
        announced: bool = False,
    ) -> str:
        """The deployment id: the one an earlier attempt made, or a new upload's.

        Nothing is written after a successful upload: recording the project (or the new
        deployment) comes next, and should that fail, the attempt's "uploading" makes the retry
        list the project's deployments and adopt the one not in ``known``. ``announced``: the record
        already says "uploading" for this project (``_adopt_project``)."""
        if attempt is not None and attempt.project_id == project_id:
            if attempt.deployment_id:  # a record written before uploads stopped being noted
                return attempt.deployment_id
            if attempt.step is Step.UPLOADING:
                known = attempt.known_deployments
                adopted = await self._new_deployment(project_id, known)
                if adopted is not None:
                    return adopted

        if not announced:
            await self._attempts.record(
                wallet.address,
                name,
                kind=kind,
                step=Step.UPLOADING,
                project_id=project_id,
                known_deployments=known,
            )
        try:
            deployment_id = await self._send_upload(project_id, upload)
        except UpstreamError as exc:
            adopted = None
            if exc.may_have_applied:
                adopted = await self._read_or_none(self._new_deployment(project_id, known))
            if adopted is None:
                await self._after_failed_upload(wallet, name, kind, project_id, exc)
                raise
            deployment_id = adopted
        return deployment_id

    async def _after_failed_upload(
        self, wallet: Wallet, name: str, kind: str, project_id: str, error: UpstreamError
    ) -> None:
        """Roll the step back as far as the failure proves: an ambiguous upload stays
        "uploading" (the retry lists before uploading again); a definite one returns to
        "created" (a deploy keeps its project for the retry; a redeploy has nothing half-made);
        a project CreateOS no longer knows is forgotten."""
        if error.may_have_applied:
            return
        if isinstance(error, UpstreamNotFound):
            if kind == "deploy":
                await self._forget_attempt(wallet, name)
            else:
                await self._attempts.forget(wallet.address, name)
            return
        if kind == "deploy":
            await self._attempts.record(
                wallet.address, name, kind=kind, step=Step.CREATED, project_id=project_id
            )
        else:
            await self._attempts.forget(wallet.address, name)

    async def _send_upload(self, project_id: str, upload: Upload) -> str:
        """Files via the base64 endpoint (contents passed through as sent) up to 100 files;
        more are zipped here (deflate, in a worker thread); a zip upload goes as it is."""
        if not isinstance(upload, FilesUpload):
            return await self._upstream.upload_zip(project_id, upload.data, upload.filename)
        if len(upload.files) <= MAX_FILES_PER_UPLOAD:
            return await self._upstream.upload_files_base64(
                project_id, [(f.path, f.content_base64) for f in upload.files]
            )
        archive = await asyncio.to_thread(zip_files, upload.files)
        return await self._upstream.upload_zip(project_id, archive, GATEWAY_ZIP_NAME)

    async def _new_deployment(self, project_id: str, known: tuple[str, ...]) -> str | None:
        """The newest deployment of the project that is not among ``known``, if any."""
        for deployment in await self._upstream.list_deployments(project_id):  # newest first
            if deployment.id not in known:
                return deployment.id
        return None

    @staticmethod
    async def _read_or_none(read: Awaitable[_T]) -> _T | None:
        """A recovery read whose own failure must not hide the original error: ``None``."""
        try:
            return await read
        except UpstreamError as exc:
            log.warning("recovery read failed: %s", exc.internal or exc.public)
            return None

    @contextlib.asynccontextmanager
    async def _answering_upstream_failures(self, money: _Money) -> AsyncIterator[None]:
        """Upstream failures after the decision become answers that name the balance."""
        try:
            yield
        except UpstreamThrottled as exc:
            raise Unavailable(
                f"The deploy service is busy; {money.retry_advice()}",
                internal=exc.internal,
                headers={RETRY_AFTER: str(exc.retry_after)},
                code="upstream_busy",
                retry_after=exc.retry_after,
                **money.fields(),
            ) from exc
        except UpstreamError as exc:
            raise UpstreamFailed(
                f"Upstream failed; {money.retry_advice()}",
                internal=exc.internal or exc.public,
                code="upstream_failed",
                **money.fields(),
            ) from exc


def _deployed(
    wallet: Wallet,
    project_id: str,
    deployment_id: str,
    decision: DeployOnCredits,
    paid: PaymentCredited | GaslessPaid | None,
) -> Deployed:
    if isinstance(paid, GaslessPaid):
        return Deployed(
            project_id, deployment_id, None, wallet.address, paid.credited, paid.payment
        )
    return Deployed(project_id, deployment_id, decision.warning, wallet.address, paid)


def deploy_outcome(error: BaseException) -> str:
    """The ``outcome`` label of a deploy that raised ``error``."""
    if isinstance(error, PaymentRequired):
        return "payment_required"
    if isinstance(error, Conflict):
        return "conflict"
    if isinstance(error, Unavailable):
        return "unavailable"
    if isinstance(error, UpstreamFailed):
        return "upstream_failed"
    if isinstance(error, GatewayError) and error.status < 500:
        return "rejected"
    if isinstance(error, asyncio.CancelledError):
        return "cancelled"
    return "error"


def _adoptable(project: Project | None) -> TypeGuard[Project]:
    """A project found by name can be adopted unless CreateOS is deleting it."""
    return project is not None and project.status not in ("deleting", "deleted")


def deploy_lock_ttl_ms(settings: Settings) -> int:
    """Longer than the slowest deploy: payment verification or settlement, a few reads, one
    upload."""
    seconds = (
        max(
            settings.verify_timeout_seconds,
            settings.settle_wait_seconds + 4 * settings.rpc_timeout_seconds,
        )
        + settings.upstream_upload_timeout
        + 8 * (settings.upstream_connect_timeout + settings.upstream_read_timeout)
    )
    return int(seconds * 1000)


def zip_files(files: Sequence[UploadFile]) -> bytes:
    """A deflated zip of the files (decoded one at a time), paths as validated."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for upload_file in files:
            archive.writestr(upload_file.path, _decode(upload_file.content_base64))
    return buffer.getvalue()


def _decode(content_base64: str) -> bytes:
    return binascii.a2b_base64(content_base64, strict_mode=True)
