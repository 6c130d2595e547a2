"""The async agent client: deploy code through the gateway and pay its 402 quotes.

    async with AgentClient(url, account, rpc_urls={"arbitrum": rpc}, max_usd=Decimal(5)) as c:
        deployment = await c.deploy(collect(Path("app")).upload(), name="my-app")
        print(deployment.url)

Rules it keeps (README.md, Deploying as an agent):
- every request is signed afresh (new nonce and timestamp), retries included;
- a quote is paid only when it is within the spend cap, the total of what one call pays
  (``SpendCapExceeded`` otherwise, before anything is sent), with one ERC-20 ``transfer`` on
  the quoted chain, then the request is retried with ``X-Payment-Tx`` once the receipt is
  mined;
- a 402 whose ``warning`` says the credits already cover the deploy but fund other live
  projects is never paid (``CreditsCoverQuote``): paying would not answer it; opting in
  (``use_existing_credits``) does;
- one deploy pays at most once, unless the gateway answers that payment with a 402 saying it
  was credited and fell short (``credited_usd``, for less than the payment moved): that
  shortfall is paid once, within the cap. Any other 402 after a payment is
  ``AskedToPayAgain``;
- a pending or not-found answer is retried with the *same* tx after ``Retry-After``; a paid tx
  is written to the journal before its receipt, so a retry after a gateway restart, a lost
  answer or a client crash sends the same tx instead of paying again;
- after a 409 "Payment already processed" or a 502 the client never pays again for that deploy:
  it retries on the credits it already has (``X-Use-Existing-Credits: true``);
- every deploy carries one ``Idempotency-Key`` for all its attempts, so a retry of a request
  whose answer was lost replays the first answer instead of deploying twice.

Transport errors are retried for ``unreachable_seconds`` (the gateway may be restarting), 429s
after their ``Retry-After``. Every outcome is a dataclass of ``gateway.client.models`` or an
error of ``gateway.client.errors``; progress goes to the ``on_progress`` callback.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import ROUND_CEILING, Decimal
from typing import Any, TypeVar

import httpx
from eth_account.signers.local import LocalAccount

from gateway.client.errors import (
    AskedToPayAgain,
    BuildFailed,
    ClientError,
    CreditsCoverQuote,
    DeployTimedOut,
    GatewayRefused,
    GatewayUnreachable,
    NameTaken,
    PaymentError,
    PaymentNotConfirmed,
    PaymentRejected,
    SpendCapExceeded,
    UpstreamFailed,
)
from gateway.client.gasless import (
    PAYMENT_REQUIRED,
    PAYMENT_RESPONSE,
    PAYMENT_SIGNATURE,
    GaslessOffer,
    gasless_offer,
    settled_tx,
    sign_payment,
)
from gateway.client.journal import Journal, MemoryJournal, PendingRequest
from gateway.client.models import (
    Credits,
    Deployment,
    DeploymentStatus,
    DeployStarted,
    Logs,
    Payment,
    Progress,
    Project,
    Quote,
    TopUp,
)
from gateway.client.payer import TokenPayer
from gateway.client.receipts import GATEWAY_RECEIPT, ReceiptInvalid, verify_receipt
from gateway.client.signing import auth_headers

ProgressCallback = Callable[[Progress], None]
_T = TypeVar("_T")

DEFAULT_MAX_USD = Decimal(5)
#: How the client pays a quote: ``auto`` signs a gasless authorization when the 402 offers one
#: for the quote's token (USDC) and sends a transfer otherwise; ``gasless`` and ``transfer``
#: insist on one way.
PAY_MODES = ("auto", "gasless", "transfer")
UPSTREAM_RETRIES = 3
RATE_LIMIT_RETRIES = 5
IN_PROGRESS_RETRIES = 30


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    body: dict[str, Any]
    headers: httpx.Headers

    def retry_after(self, default: float = 1.0) -> float:
        raw = self.headers.get("retry-after", "")
        return float(raw) if raw.isdigit() else default


def _ignore(progress: Progress) -> None:
    """The default progress callback."""


class AgentClient:
    """One wallet talking to one gateway. Use as an async context manager (or ``aclose``)."""

    def __init__(
        self,
        gateway_url: str,
        account: LocalAccount,
        *,
        rpc_urls: dict[str, str] | None = None,
        max_usd: Decimal = DEFAULT_MAX_USD,
        journal: Journal | None = None,
        on_progress: ProgressCallback = _ignore,
        poll_seconds: float = 1.0,
        confirm_timeout_seconds: float = 180.0,
        status_timeout_seconds: float = 900.0,
        unreachable_seconds: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        pay_with: str = "auto",
    ) -> None:
        if pay_with not in PAY_MODES:
            raise ValueError(f"pay_with must be one of {', '.join(PAY_MODES)}, not {pay_with!r}")
        self.pay_with = pay_with
        self._receipt_key: dict[str, Any] | None = None  # GET /agent/receipts, once
        self.gateway_url = gateway_url.rstrip("/")
        self.account = account
        self.max_usd = max_usd
        self._payer = TokenPayer(account, rpc_urls or {})
        self._journal: Journal = journal if journal is not None else MemoryJournal()
        self._progress = on_progress
        self._poll = poll_seconds
        self._confirm_timeout = confirm_timeout_seconds
        self._status_timeout = status_timeout_seconds
        self._unreachable = unreachable_seconds
        self._http = httpx.AsyncClient(
            base_url=self.gateway_url,
            timeout=httpx.Timeout(120.0, connect=5.0),
            transport=transport,
        )

    async def __aenter__(self) -> AgentClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- deploys ------------------------------------------------------------------------------

    async def deploy(
        self,
        upload: dict[str, Any],
        *,
        name: str,
        display_name: str | None = None,
        description: str | None = None,
        months: int = 1,
        chain: str | None = None,
        token: str | None = None,
        settings: dict[str, Any] | None = None,
        use_existing_credits: bool = False,
    ) -> Deployment:
        """Deploy a new project, paying the quote when needed, and wait until it is ``ready``.

        Raises ``BuildFailed`` when it ends ``failed``, ``NameTaken``, a ``PaymentError``, or
        another ``ClientError``.
        """
        started = await self.start_deploy(
            upload,
            name=name,
            display_name=display_name,
            description=description,
            months=months,
            chain=chain,
            token=token,
            settings=settings,
            use_existing_credits=use_existing_credits,
        )
        status = await self.wait_until_finished(started.project_id, started.deployment_id)
        return Deployment(started, status)

    async def start_deploy(
        self,
        upload: dict[str, Any],
        *,
        name: str,
        display_name: str | None = None,
        description: str | None = None,
        months: int = 1,
        chain: str | None = None,
        token: str | None = None,
        settings: dict[str, Any] | None = None,
        use_existing_credits: bool = False,
    ) -> DeployStarted:
        """``POST /agent/deploy`` until the deployment has started (paying when quoted)."""
        body: dict[str, Any] = {
            "uniqueName": name,
            "displayName": display_name or name,
            "months": months,
            "upload": upload,
        }
        if description:
            body["description"] = description
        if settings:
            body["settings"] = settings
        return await self._paid_request(
            "/agent/deploy",
            body,
            purpose=f"deploy:{name}",
            chain=chain,
            token=token,
            use_existing_credits=use_existing_credits,
        )

    async def redeploy(
        self,
        project_id: str,
        upload: dict[str, Any],
        *,
        months: int | None = None,
        chain: str | None = None,
        token: str | None = None,
        use_existing_credits: bool = False,
    ) -> Deployment:
        """New code into a project this wallet owns; paid like a deploy; waits for the end."""
        started = await self.start_redeploy(
            project_id,
            upload,
            months=months,
            chain=chain,
            token=token,
            use_existing_credits=use_existing_credits,
        )
        status = await self.wait_until_finished(started.project_id, started.deployment_id)
        return Deployment(started, status)

    async def start_redeploy(
        self,
        project_id: str,
        upload: dict[str, Any],
        *,
        months: int | None = None,
        chain: str | None = None,
        token: str | None = None,
        use_existing_credits: bool = False,
    ) -> DeployStarted:
        """``POST /agent/projects/{id}/deploy`` until the deployment has started (paying when
        quoted)."""
        body: dict[str, Any] = {"upload": upload}
        if months is not None:
            body["months"] = months
        return await self._paid_request(
            f"/agent/projects/{project_id}/deploy",
            body,
            purpose=f"redeploy:{project_id}",
            chain=chain,
            token=token,
            use_existing_credits=use_existing_credits,
        )

    async def wait_until_finished(self, project_id: str, deployment_id: str) -> DeploymentStatus:
        """Poll the status until ``ready`` (returned) or ``failed`` (``BuildFailed``)."""
        deadline = time.monotonic() + self._status_timeout
        last_state: str | None = None
        while True:
            status = await self.status(project_id, deployment_id)
            if status.status == "ready":
                self._report("ready", f"live at {status.endpoint}", status=status)
                return status
            if status.status == "failed":
                self._report(
                    "failed", f"{status.deployment_status}: {status.reason}", status=status
                )
                raise BuildFailed(status)
            if status.deployment_status != last_state:
                last_state = status.deployment_status
                self._report("building", f"{last_state}: {status.message}", status=status)
            if time.monotonic() >= deadline:
                raise DeployTimedOut(
                    f"deployment {deployment_id} still {last_state} after "
                    f"{self._status_timeout:.0f} s"
                )
            await asyncio.sleep(self._poll)

    # --- reads and other operations -------------------------------------------------------------

    async def status(self, project_id: str, deployment_id: str) -> DeploymentStatus:
        answer = await self._ok("GET", f"/agent/deploy/{project_id}/{deployment_id}/status")
        return _parsed(DeploymentStatus.from_wire, answer)

    async def projects(self) -> list[Project]:
        answer = await self._ok("GET", "/agent/projects")
        return [_parsed(Project.from_wire, _Answer(200, p, answer.headers)) for p in _list(answer)]

    async def delete(self, project_id: str) -> None:
        await self._ok("DELETE", f"/agent/projects/{project_id}")

    async def credits(self) -> Credits:
        return _parsed(Credits.from_wire, await self._ok("GET", "/agent/credits"))

    async def logs(
        self, project_id: str, deployment_id: str, *, kind: str = "build", since_seconds: int = 60
    ) -> Logs:
        params = {"kind": kind} if kind == "build" else {"kind": kind, "since": str(since_seconds)}
        answer = await self._ok(
            "GET", f"/agent/deploy/{project_id}/{deployment_id}/logs", params=params
        )
        return _parsed(Logs.from_wire, answer)

    async def top_up(
        self, amount_usd: Decimal, *, chain: str | None = None, token: str | None = None
    ) -> TopUp:
        """Pay ``amount_usd`` (within the spend cap) and credit it without deploying.

        The tx is journalled as soon as it is sent, like a deploy's: the same top-up (same
        gateway, wallet, chain, token and amount) run again after a crash, a lost answer or a
        gateway restart sends that tx instead of paying again. When an earlier attempt was
        credited but its answer lost, the gateway's 409 "Payment already processed" is that
        top-up's result (``credited_earlier``). Raises ``PaymentRejected`` (and forgets the tx)
        when the gateway will not credit it.
        """
        chains = (await self._ok("GET", "/agent/chains", signed=False)).body["chains"]
        chain_name = chain or str(chains[0]["chain"])
        known = {str(c["chain"]): c for c in chains}
        if chain_name not in known:
            raise ClientError(f"the gateway does not accept {chain_name}; it takes {list(known)}")
        token_key = token or "usdc"
        _, decimals = await self._token(chain_name, token_key)
        amount_token = int(amount_usd.scaleb(decimals).to_integral_value(rounding=ROUND_CEILING))
        key = (
            f"{self.gateway_url}|{self.account.address.lower()}|"
            f"topup:{chain_name}:{token_key.lower()}:{amount_token}"
        )
        pending = self._journal.get(key)
        payment = _payment_of(pending) if pending is not None else None
        if payment is not None:
            self._report("submitting", f"retrying with the earlier payment {payment.label}")
        else:
            if amount_usd > self.max_usd:
                raise SpendCapExceeded(amount_usd, self.max_usd, asking="this top-up pays")
            recipients = await self._ok("GET", "/agent/recipients", signed=False)
            pay_to = next(
                str(r["address"]) for r in recipients.body["recipients"] if r["chain"] == chain_name
            )
            quote = Quote(
                amount_usd=amount_usd,
                amount_token=amount_token,
                pay_to=pay_to,
                chain=chain_name,
                chain_id=int(known[chain_name]["chain_id"]),
                token=token_key,
                decimals=decimals,
                balance_usd=Decimal(0),
                active_projects=0,
            )
            pending = PendingRequest(idempotency_key=str(uuid.uuid4()))
            offers = await self._top_up_offers(amount_usd, chain_name, token_key)
            payment = await self._pay(quote, journal_key=key, pending=pending, offers=offers)
        headers = _payment_headers(payment)
        params = {"amount_usd": str(amount_usd)}  # what a gasless offer was made for
        deadline = time.monotonic() + self._confirm_timeout
        while True:
            answer = await self._request(
                "POST", "/agent/credits/topup", headers=headers, params=params
            )
            if answer.status == 200:
                self._journal.remove(key)
                if payment.credential is not None:
                    payment = self._settled(payment, answer)
                payment = await self._receipted(payment, answer)
                return _parsed(functools.partial(TopUp.from_wire, payment=payment), answer)
            if answer.status == 409 and answer.body.get("code") == "payment_already_processed":
                self._journal.remove(key)
                self._report("credits", f"payment {payment.label} was already credited")
                return await self._credited_earlier(payment, answer)
            try:
                await self._wait_if_pending(answer, payment, deadline)
            except PaymentRejected:
                self._journal.remove(key)  # never creditable: a rerun pays afresh, on purpose
                raise

    async def _top_up_offers(self, amount_usd: Decimal, chain: str, token: str) -> str | None:
        """The gateway's gasless offers for this top-up (its 402's ``PAYMENT-REQUIRED``), or
        None: paying by transfer, or a gateway that offers none."""
        if self.pay_with == "transfer" or token.lower() != "usdc":
            return None
        answer = await self._request(
            "POST",
            "/agent/credits/topup",
            headers={"X-Payment-Chain": chain},
            params={"amount_usd": str(amount_usd)},
        )
        if answer.status == 402:
            offers: str | None = answer.headers.get(PAYMENT_REQUIRED)
            return offers
        if answer.status >= 400 and answer.body.get("code") != "missing_payment_tx":
            raise _refused(answer)
        return None

    async def _credited_earlier(self, payment: Payment, answer: _Answer) -> TopUp:
        """The ``TopUp`` of a tx an earlier attempt had credited: the amount from its ledger
        entry (the amount the transfer moved when that entry is no longer among the newest)."""
        credits = await self.credits()
        credited = next(
            (
                entry.amount_usd
                for entry in credits.ledger
                if entry.kind == "payment"
                and payment.tx_hash
                and payment.tx_hash.lower() in (entry.ref or "").lower()
            ),
            None,
        )
        if credited is None:
            _, decimals = await self._token(payment.chain, payment.token)
            credited = Decimal(payment.amount_token).scaleb(-decimals)
        balance = answer.body.get("current_credit_balance_usd", credits.balance_usd)
        return TopUp(payment, credited, Decimal(balance), credited_earlier=True)

    # --- the paid request ------------------------------------------------------------------------

    async def _paid_request(
        self,
        path: str,
        body: dict[str, Any],
        *,
        purpose: str,
        chain: str | None,
        token: str | None,
        use_existing_credits: bool,
    ) -> DeployStarted:
        """Send a deploy-shaped request until it starts; the module docstring's rules."""
        content = json.dumps(body, separators=(",", ":")).encode()  # same bytes every attempt
        key = f"{self.gateway_url}|{self.account.address.lower()}|{purpose}"
        pending = self._journal.get(key) or PendingRequest(idempotency_key=str(uuid.uuid4()))
        self._journal.put(key, pending)
        payment = _payment_of(pending)
        if payment is not None:
            self._report("submitting", f"retrying with the earlier payment {payment.label}")
        opt_in = use_existing_credits
        may_pay = True
        spent = Decimal(0)  # paid by this call: the spend cap is for all of it together
        shortfall_paid = False
        last_payment = payment  # the latest payment sent for this deploy, even once consumed
        deadline = time.monotonic() + self._confirm_timeout
        retries = {"upstream": 0, "in_progress": 0}
        while True:
            headers = {"Idempotency-Key": pending.idempotency_key}
            headers["Content-Type"] = "application/json"
            if payment is not None:
                headers.update(_payment_headers(payment))
            else:
                if chain:
                    headers["X-Payment-Chain"] = chain
                if token:
                    headers["X-Payment-Token"] = token
            if opt_in:
                headers["X-Use-Existing-Credits"] = "true"
            answer = await self._request("POST", path, content=content, headers=headers)

            if answer.status == 200:
                self._journal.remove(key)
                if payment is not None and payment.credential is not None:
                    payment = self._settled(payment, answer)
                if payment is not None:
                    payment = await self._receipted(payment, answer)
                replayed = answer.headers.get("idempotent-replayed") == "true"
                started = _parsed(
                    functools.partial(DeployStarted.from_wire, payment=payment, replayed=replayed),
                    answer,
                )
                self._report("started", f"deployment {started.deployment_id} started")
                return started

            if answer.status == 402 and "amount_token" in answer.body:
                quote = _parsed(Quote.from_wire, answer)
                self._report("quote", _quote_text(quote), quote=quote)
                followed = payment or last_payment
                if payment is not None:
                    # Our tx was credited and the credits still fall short (or were spent):
                    # it is consumed either way, so forget it.
                    pending = PendingRequest(pending.idempotency_key)
                    self._journal.put(key, pending)
                    payment = None
                if quote.warning is not None and quote.balance_usd >= quote.amount_usd:
                    raise CreditsCoverQuote(
                        quote.amount_usd, quote.balance_usd, quote.active_projects, paid_usd=spent
                    )
                if not may_pay:
                    raise PaymentError(
                        "the gateway asks for a payment again after crediting this deploy's "
                        "payment; not paying twice (check `balance` and retry)"
                    )
                if followed is not None:
                    refusal = _not_a_shortfall(quote, followed, shortfall_paid=shortfall_paid)
                    if refusal is not None:
                        raise AskedToPayAgain(refusal, followed.label)
                    shortfall_paid = True
                asked = max(quote.amount_usd, quote.token_amount_usd)
                if spent + asked > self.max_usd:
                    raise SpendCapExceeded(asked, self.max_usd, spent)
                payment = last_payment = await self._pay(
                    quote,
                    journal_key=key,
                    pending=pending,
                    offers=answer.headers.get(PAYMENT_REQUIRED),
                )
                pending = self._journal.get(key) or pending
                spent += asked
                deadline = time.monotonic() + self._confirm_timeout
                continue

            if answer.status == 409 and answer.body.get("code") == "payment_already_processed":
                if payment is None:
                    raise _refused(answer)
                # Credited by an attempt whose answer we lost: deploy on those credits.
                self._report("credits", "payment already credited; deploying on credits")
                pending = PendingRequest(pending.idempotency_key)
                self._journal.put(key, pending)
                payment, opt_in, may_pay = None, True, False
                continue

            if answer.status == 409 and answer.body.get("code") == "deploy_in_progress":
                retries["in_progress"] += 1
                if retries["in_progress"] > IN_PROGRESS_RETRIES:
                    raise _refused(answer)
                await asyncio.sleep(answer.retry_after(5))
                continue

            if answer.status == 502:
                retries["upstream"] += 1
                if payment is not None:
                    pending = PendingRequest(pending.idempotency_key)
                    self._journal.put(key, pending)
                    payment = None
                opt_in, may_pay = True, False  # any payment is credited: retry on credits
                if retries["upstream"] > UPSTREAM_RETRIES:
                    raise _refused(answer)
                self._report("retrying", f"CreateOS failed; retrying on credits: {_error(answer)}")
                await asyncio.sleep(answer.retry_after(2) * retries["upstream"])
                continue

            if payment is not None:
                try:
                    await self._wait_if_pending(answer, payment, deadline)
                except PaymentRejected:
                    self._journal.put(key, PendingRequest(pending.idempotency_key))
                    raise
                continue
            raise _refused(answer)

    async def _wait_if_pending(self, answer: _Answer, payment: Payment, deadline: float) -> None:
        """Return (after ``Retry-After``) when the answer says the payment is pending, not found
        yet, or verification could not finish; raise for anything else."""
        retryable = answer.body.get("payment_status") in ("pending", "not_found") or (
            answer.status == 503 and "retry-after" in answer.headers
        )
        if answer.status == 402 and answer.body.get("error") in (
            "Payment verification failed",
            "Payment authorization refused",
        ):
            reason = answer.body.get("reason")
            detail = answer.body.get("detail") or "no detail given"
            raise PaymentRejected(
                f"the gateway rejected {'' if payment.credential else 'payment '}"
                f"{payment.label} on {payment.chain} "
                f"({reason or 'no reason given'}): {detail}; nothing more was paid",
                payment.tx_hash,
                reason if isinstance(reason, str) else None,
            )
        if not retryable:
            raise _refused(answer)
        if time.monotonic() >= deadline:
            raise PaymentNotConfirmed(
                f"{payment.label} still not confirmed by the gateway: {_error(answer)}",
                payment.tx_hash,
            )
        self._report("pending", _error(answer), tx=payment.tx_hash or answer.body.get("tx"))
        await asyncio.sleep(answer.retry_after())

    async def _pay(
        self,
        quote: Quote,
        *,
        journal_key: str,
        pending: PendingRequest,
        offers: str | None = None,
    ) -> Payment:
        """Pay ``quote``: a gasless authorization when ``offers`` (the 402's
        ``PAYMENT-REQUIRED``) has one for its token and ``pay_with`` allows it, journalled
        before it is sent; otherwise transfer ``quote.amount_token`` to ``quote.pay_to`` and
        wait for the receipt, the tx journalled as soon as it is sent."""
        token_address, _ = await self._token(quote.chain, quote.token)
        if self.pay_with != "transfer":
            offer = gasless_offer(offers, chain_id=quote.chain_id, token_address=token_address)
            if offer is not None:
                return self._authorize(quote, offer, journal_key=journal_key, pending=pending)
            if self.pay_with == "gasless":
                raise PaymentError(
                    f"the gateway offers no gasless payment in {quote.token.upper()} on "
                    f"{quote.chain} (only USDC can be paid gasless, and only where the gateway "
                    "has a settler); pay with a transfer instead"
                )
        self._report(
            "paying",
            f"paying {quote.token_amount_usd} {quote.token.upper()} on {quote.chain} "
            f"to {quote.pay_to}",
            quote=quote,
        )
        w3, tx = await self._payer.send(
            chain=quote.chain,
            chain_id=quote.chain_id,
            token=token_address,
            pay_to=quote.pay_to,
            amount=quote.amount_token,
        )
        try:
            payment = Payment(quote.chain, quote.token, tx, quote.amount_token)
            self._journal.put(
                journal_key,
                replace(
                    pending, tx=tx, chain=quote.chain, token=quote.token,
                    amount_token=quote.amount_token,
                ),
            )  # fmt: skip
            self._report("sent", f"transfer sent: {tx}", tx=tx)
            block = await self._payer.wait_for_receipt(w3, quote.chain, tx)
        finally:
            await self._payer.close(w3)
        self._report("confirmed", f"transfer mined in block {block}", tx=tx)
        return payment

    def _authorize(
        self, quote: Quote, offer: GaslessOffer, *, journal_key: str, pending: PendingRequest
    ) -> Payment:
        """Sign the gasless offer (no gas, no RPC) and journal it before it is sent."""
        if offer.amount > quote.amount_token or str(offer.accepted.get("payTo", "")).lower() != (
            quote.pay_to.lower()
        ):
            raise PaymentError(
                f"the gateway's gasless offer ({offer.amount} base units to "
                f"{offer.accepted.get('payTo')}) does not match its quote ({quote.amount_token} "
                f"to {quote.pay_to}); not paying"
            )
        self._report(
            "paying",
            f"signing a gasless authorization of {quote.token_amount_usd} "
            f"{quote.token.upper()} on {quote.chain} to {quote.pay_to} (the gateway pays the gas)",
            quote=quote,
        )
        credential = sign_payment(self.account, offer)
        self._journal.put(
            journal_key,
            replace(
                pending, tx=None, chain=quote.chain, token=quote.token,
                amount_token=offer.amount, credential=credential,
            ),
        )  # fmt: skip
        self._report("sent", "authorization signed; the gateway settles it on-chain")
        return Payment(quote.chain, quote.token, "", offer.amount, credential)

    def _settled(self, payment: Payment, answer: _Answer) -> Payment:
        """The gasless payment with the settlement tx the gateway answered with."""
        tx = settled_tx(answer.headers.get(PAYMENT_RESPONSE)) or ""
        if tx:
            self._report("confirmed", f"the gateway settled the authorization in {tx}", tx=tx)
        return replace(payment, tx_hash=tx)

    async def _receipted(self, payment: Payment, answer: _Answer) -> Payment:
        """The payment with the gateway's signed receipt, once verified (a receipt that does
        not verify is reported and left out: the credit itself stands either way)."""
        header = answer.headers.get(GATEWAY_RECEIPT)
        if not header:
            return payment
        if self._receipt_key is None:
            self._receipt_key = (await self._ok("GET", "/agent/receipts", signed=False)).body
        try:
            receipt = verify_receipt(
                header, self._receipt_key, payer=self.account.address, tx=payment.tx_hash or None
            )
        except ReceiptInvalid as exc:
            self._report("receipt", f"the gateway's receipt does not verify: {exc}")
            return payment
        self._report("receipt", f"receipt signed by {self._receipt_key.get('address')} verified")
        return replace(payment, receipt=receipt, tx_hash=payment.tx_hash or str(receipt["tx"]))

    async def _token(self, chain: str, token: str) -> tuple[str, int]:
        """The token's contract address and decimals on ``chain``, as the gateway accepts it."""
        answer = await self._ok(
            "GET", f"/agent/balance/{self.account.address}", params={"chain": chain}, signed=False
        )
        for entry in answer.body.get("balances", []):
            if str(entry.get("token")).lower() == token.lower():
                return str(entry["address"]), int(entry["decimals"])
        raise ClientError(f"the gateway does not accept {token} on {chain}")

    # --- HTTP ---------------------------------------------------------------------------------

    async def _ok(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        signed: bool = True,
    ) -> _Answer:
        answer = await self._request(method, path, params=params, signed=signed)
        if answer.status >= 400:
            raise _refused(answer)
        return answer

    async def _request(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        signed: bool = True,
    ) -> _Answer:
        """One logical request: re-signed and re-sent while the gateway is unreachable (up to
        ``unreachable_seconds``) or rate limiting; any other answer is returned."""
        unreachable_since: float | None = None
        rate_limited = 0
        while True:
            sent_headers = dict(headers or {})
            if signed:
                sent_headers.update(auth_headers(self.account))
            try:
                response = await self._http.request(
                    method, path, content=content, headers=sent_headers, params=params
                )
            except httpx.TransportError as exc:
                now = time.monotonic()
                unreachable_since = unreachable_since or now
                if now - unreachable_since >= self._unreachable:
                    raise GatewayUnreachable(
                        f"{self.gateway_url} did not answer for {self._unreachable:.0f} s: {exc}"
                    ) from exc
                self._report("retrying", f"gateway unreachable ({type(exc).__name__}); retrying")
                await asyncio.sleep(0.5)
                continue
            answer = _Answer(response.status_code, _json(response), response.headers)
            if answer.status == 429 and rate_limited < RATE_LIMIT_RETRIES:
                rate_limited += 1
                self._report("retrying", "rate limited; waiting")
                await asyncio.sleep(answer.retry_after(5))
                continue
            return answer

    def _report(self, stage: str, message: str, **fields: Any) -> None:
        self._progress(Progress(stage, message, **fields))


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = json.loads(response.content, parse_float=Decimal)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return {"error": f"unexpected non-JSON answer (HTTP {response.status_code})"}
    return body


def _error(answer: _Answer) -> str:
    return str(answer.body.get("error", f"HTTP {answer.status}"))


def _refused(answer: _Answer) -> GatewayRefused:
    code = answer.body.get("code")
    kind: type[GatewayRefused] = GatewayRefused
    if answer.status == 409 and code == "name_taken":
        kind = NameTaken
    elif answer.status == 502:
        kind = UpstreamFailed
    fields = {k: v for k, v in answer.body.items() if k not in ("error", "code")}
    return kind(answer.status, _error(answer), code if isinstance(code, str) else None, fields)


def _parsed(parse: Callable[[dict[str, Any]], _T], answer: _Answer) -> _T:
    try:
        return parse(answer.body)
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        raise GatewayRefused(
            answer.status, f"malformed answer from the gateway: {exc!r}", None, answer.body
        ) from exc


def _list(answer: _Answer) -> list[dict[str, Any]]:
    projects = answer.body.get("projects")
    return [p for p in projects if isinstance(p, dict)] if isinstance(projects, list) else []


def _payment_headers(payment: Payment) -> dict[str, str]:
    if payment.credential is not None:
        return {PAYMENT_SIGNATURE: payment.credential, "X-Payment-Chain": payment.chain}
    return {
        "X-Payment-Tx": payment.tx_hash,
        "X-Payment-Chain": payment.chain,
        "X-Payment-Token": payment.token,
    }


def _payment_of(pending: PendingRequest) -> Payment | None:
    if pending.chain is None or pending.token is None:
        return None
    if pending.credential is not None:
        amount = pending.amount_token or 0
        return Payment(pending.chain, pending.token, pending.tx or "", amount, pending.credential)
    if pending.tx is None:
        return None
    return Payment(pending.chain, pending.token, pending.tx, pending.amount_token or 0)


def _not_a_shortfall(quote: Quote, followed: Payment, *, shortfall_paid: bool) -> str | None:
    """Why a 402 that answers the request carrying ``followed`` must not be paid (None: it is
    the shortfall of that payment, which may be paid once). The gateway says a credited payment
    fell short with ``credited_usd``, in the payment's chain and token, for less than the
    payment moved; anything else paid again would be the same money twice."""
    again = (
        f"the gateway asks {quote.amount_usd} USD again after this deploy's payment "
        f"{followed.label}"
    )
    advice = (
        "; not paying twice. The payment stays in the wallet's credits (see `balance`); "
        "retry on them, opting in to shared credits if other projects draw on them"
    )
    if quote.credited_usd is None:
        return f"{again}, without saying it was credited and fell short{advice}"
    if shortfall_paid:
        return f"{again}, and the shortfall was paid already{advice}"
    if (quote.chain, quote.token) != (followed.chain, followed.token):
        return f"{again}, on {quote.chain} {quote.token} instead of its chain and token{advice}"
    if quote.amount_token >= followed.amount_token:
        return f"{again}: as much as the payment moved, so not its shortfall{advice}"
    return None


def _quote_text(quote: Quote) -> str:
    text = (
        f"402: {quote.amount_usd} USD = {quote.amount_token} base units of "
        f"{quote.token.upper()} on {quote.chain} to {quote.pay_to} "
        f"(credits {quote.balance_usd} USD, {quote.active_projects} active projects)"
    )
    if quote.credited_usd is not None and quote.warning is None:
        text += f"; {quote.credited_usd} USD of the payment credited, this is what is missing"
    return f"{text}; {quote.warning}" if quote.warning else text
