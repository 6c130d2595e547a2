"""How a request pays, on the wire (docs/PAYMENTS.md section 6): the payment headers of the
three dialects, who the wallet of a request is, the challenges a 402 carries and the receipts
a paid answer carries.

- ``X-Payment-Tx`` (our own), ``Authorization: Payment`` (MPP) and ``PAYMENT-SIGNATURE``
  (x402): at most one per request, else 400.
- The wallet: the wallet-signature headers when any is present (all four are then required);
  with none, a protocol credential's verified payer (the flow proves it), or nobody (the quote
  is then the answer). ``X-Payment-Tx`` always needs the wallet headers: a public tx hash
  proves nothing about who sends it.
- ``offering``: every 402 that offers a payment gains the MPP and x402 challenges for its
  amount (when a settler key is configured); a pending answer offers nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

from starlette.datastructures import Headers
from starlette.requests import Request

from gateway.deploy.flow import Deployed, PaymentHeaders
from gateway.errors import BadRequest, PaymentRequired
from gateway.headers import (
    AUTHORIZATION,
    CACHE_CONTROL,
    GATEWAY_RECEIPT,
    MPP_SCHEME,
    NONCE,
    PAYMENT_CHAIN,
    PAYMENT_RECEIPT,
    PAYMENT_RESPONSE,
    PAYMENT_SIGNATURE,
    PAYMENT_TOKEN,
    PAYMENT_TX,
    SIGNATURE,
    TIMESTAMP,
    USE_EXISTING_CREDITS,
    WALLET_ADDRESS,
)
from gateway.logs import current_request
from gateway.payments.protocols import (
    BoundPayment,
    Credential,
    RequestContext,
    payment_receipt,
    payment_response,
)
from gateway.payments.receipts import Credit
from gateway.payments.service import PaymentCredited
from gateway.types import Wallet
from gateway.web.services import Services, authenticated

_WALLET_HEADERS = (WALLET_ADDRESS, SIGNATURE, TIMESTAMP, NONCE)


def request_context(request: Request, svc: Services, body_sha256: bytes) -> RequestContext:
    """What this request's challenges are bound to. The public URL is configured
    (``GATEWAY_PUBLIC_URL``) or, by default, the one the request names itself."""
    base = svc.settings.public_url or f"{request.url.scheme}://{request.url.netloc}"
    path = request.url.path
    query = request.url.query
    realm = base.partition("://")[2]
    return RequestContext(
        resource_url=base + path + (f"?{query}" if query else ""),
        realm=realm,
        route=f"{request.method} {path}" + (f"?{query}" if query else ""),
        body_sha256=body_sha256,
    )


def payment_headers(headers: Headers) -> PaymentHeaders:
    """The payment the request carries; 400 when it carries two."""

    def value(name: str) -> str | None:
        """The header's trimmed value; absent and blank are the same."""
        return headers.get(name, "").strip() or None

    tx = value(PAYMENT_TX)
    credentials = []
    authorization = value(AUTHORIZATION)
    if authorization is not None and authorization.partition(" ")[0].lower() == MPP_SCHEME.lower():
        credentials.append(Credential("mpp", authorization))
    signature = value(PAYMENT_SIGNATURE)
    if signature is not None:
        credentials.append(Credential("x402", signature))
    if len(credentials) + (tx is not None) > 1:
        raise BadRequest(
            f"Send one payment: {PAYMENT_TX}, {AUTHORIZATION}: {MPP_SCHEME} or "
            f"{PAYMENT_SIGNATURE}, not several",
            code="two_payments",
        )
    return PaymentHeaders(
        tx=tx,
        chain=value(PAYMENT_CHAIN),
        token=value(PAYMENT_TOKEN),
        use_existing_credits=(headers.get(USE_EXISTING_CREDITS, "").strip().lower() == "true"),
        credential=credentials[0] if credentials else None,
    )


async def requester(request: Request, svc: Services, payment: PaymentHeaders) -> Wallet | None:
    """The authenticated wallet, or None when the gateway settles protocol payments and the
    request carries no wallet-signature header and either pays by protocol or pays nothing
    (it is then quoted). Without a settler key every paid route needs the wallet headers."""
    anonymous_allowed = svc.gasless is not None and payment.tx is None
    if anonymous_allowed and not any(name in request.headers for name in _WALLET_HEADERS):
        await authenticated(request, anonymous=True)
        return None
    return await authenticated(request)


@contextlib.contextmanager
def offering(svc: Services, context: RequestContext) -> Iterator[None]:
    """A 402 that offers a payment leaves with the protocol challenges for it."""
    try:
        yield
    except PaymentRequired as error:
        if error.offer is not None and svc.gasless is not None:
            amount_micro, chain = error.offer
            error.headers.update(svc.gasless.offer_headers(amount_micro, chain, context))
        raise


def receipt_headers(svc: Services, deployed: Deployed) -> Mapping[str, str]:
    """The receipts of a paid answer (none for a deploy on credits alone)."""
    if deployed.credited is None:
        return {}
    timestamp = svc.clock()
    headers = {CACHE_CONTROL: "private"}
    if deployed.gasless is not None:
        headers.update(protocol_receipts(deployed.gasless, deployed.credited.tx_hash, timestamp))
    headers.update(signed_receipt(svc, deployed.wallet, deployed.credited))
    return headers


def signed_receipt(svc: Services, payer: str, credited: PaymentCredited) -> dict[str, str]:
    """Our EIP-712 receipt of ``credited`` (none without a receipt key)."""
    if svc.receipts is None:
        return {}
    context = current_request()
    credit = Credit(
        chain_id=credited.chain_id,
        tx=credited.tx_hash,
        payer=payer,
        credited_micro=credited.amount_micro,
        balance_micro=credited.balance_micro,
        request_id=context.request_id if context is not None else "",
        issued_at=int(svc.clock()),
    )
    return {GATEWAY_RECEIPT: svc.receipts.header(credit)}


def protocol_receipts(payment: BoundPayment, tx: str, timestamp: float) -> dict[str, str]:
    headers = {PAYMENT_RECEIPT: payment_receipt(payment, tx=tx, timestamp=timestamp)}
    if payment.protocol == "x402":
        headers[PAYMENT_RESPONSE] = payment_response(payment, tx=tx)
    return headers
