"""The standard payment dialects of the 402 (docs/PAYMENTS.md section 6), pure.

Beside the JSON quote, a 402 offers the same price two more ways, one offer per chain whose
USDC the gateway can settle gasless (the quote's chain first):

- **MPP**, the ``Payment`` HTTP authentication scheme: ``WWW-Authenticate: Payment`` challenges.
  A challenge id is an HMAC, under a key every gateway process derives from the settler key,
  over the challenge's own parameters and the route it was issued for, so any process can
  check that a credential echoes a challenge we issued, unaltered, for this route; ``digest``
  binds it to the request body. The credential (``Authorization: Payment``) carries an EIP-3009
  authorization whose nonce must be ``keccak256(id ‖ realm)``.
- **x402 v2**: ``PAYMENT-REQUIRED`` (standard base64 JSON, one ``accepts`` entry per chain). The
  credential (``PAYMENT-SIGNATURE``) echoes the chosen entry as ``accepted``, which must equal
  one of our offers for this request exactly, and the ``resource`` URL.

Here: building both offers, and turning a credential into an ``Authorization`` bound to its
chain and token after the protocol's own checks (``bind_mpp``, ``bind_x402``). A refusal is a
``CredentialRefused`` with a reason code; the settlement checks proper (recipient, amount,
validity window, signature, funds) are ``gateway.payments.settle``'s.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from eth_utils.crypto import keccak

from gateway.bounded_json import JsonRefused, loads
from gateway.config import ChainConfig, Settings, TokenConfig
from gateway.payments.authorization import Authorization
from gateway.types import checksum_address, is_address, micro_usd_to_token_units

#: The two standard dialects a credential may come in.
Dialect = Literal["mpp", "x402"]

#: The token the standard clients pay gasless (EIP-3009); USDT is paid by transfer only.
GASLESS_TOKEN = "usdc"
MPP_METHOD = "evm"
MPP_INTENT = "charge"
X402_VERSION = 2
#: Bounds on a credential before any parser sees it.
MAX_CREDENTIAL_CHARS = 16 * 1024
MAX_CREDENTIAL_DEPTH = 6


class CredentialRefusal(enum.StrEnum):
    """Why a protocol credential is refused before anything is sent (the 402's ``reason``)."""

    MALFORMED = "malformed_credential"
    NOT_OFFERED = "not_offered"  # a chain or token we do not settle gasless
    UNKNOWN_CHALLENGE = "unknown_challenge"  # not issued by us, altered, or for another route
    CHALLENGE_EXPIRED = "challenge_expired"
    CHALLENGE_USED = "challenge_used"
    BODY_MISMATCH = "body_mismatch"
    NONCE_MISMATCH = "nonce_mismatch"
    OFFER_MISMATCH = "offer_mismatch"
    RESOURCE_MISMATCH = "resource_mismatch"
    SOURCE_MISMATCH = "source_mismatch"


class CredentialRefused(Exception):
    """``bound``: what the credential would pay, when it is refused only for having gone
    stale (an expired challenge, an offer that has changed since): if that payment is already
    being settled, the caller reconciles it instead of refusing (no new challenge for a
    payment that exists)."""

    def __init__(
        self, reason: CredentialRefusal, detail: str, *, bound: BoundPayment | None = None
    ) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.bound = bound


@dataclass(frozen=True, slots=True)
class RequestContext:
    """What a challenge is bound to: the public URL of this request (``resource_url``), its
    host (``realm``), the route (method and path with query) and the SHA-256 of its body."""

    resource_url: str
    realm: str
    route: str
    body_sha256: bytes


@dataclass(frozen=True, slots=True)
class Offer:
    """One gasless way to pay ``units`` of ``token`` on ``chain``."""

    chain: ChainConfig
    token: TokenConfig
    units: int


@dataclass(frozen=True, slots=True)
class Credential:
    """A protocol payment as it arrived: which dialect and its header value (parsed later,
    when the quote it must match is known)."""

    protocol: Dialect
    value: str


@dataclass(frozen=True, slots=True)
class BoundPayment:
    """A credential checked against its protocol's rules: the authorization to settle on
    ``chain`` in ``token``, at least ``min_units``."""

    protocol: Dialect
    chain: ChainConfig
    token: TokenConfig
    authorization: Authorization
    min_units: int
    challenge_id: str | None  # MPP only
    #: The signature was proved to be the payer's already (it made the payer the wallet of a
    #: request without wallet headers): settling need not check it again.
    signature_proved: bool = False

    @property
    def network(self) -> str:
        return f"eip155:{self.chain.chain_id}"


def challenge_secret(settler_key: str) -> bytes:
    """The HMAC key of challenge ids: derived from the settler key every process holds, so
    no process needs another's state and the key itself is never used for anything else."""
    return hmac.new(
        bytes.fromhex(settler_key.removeprefix("0x")), b"gateway mpp challenge id v1", "sha256"
    ).digest()


# --- offers ---------------------------------------------------------------------------------


def gasless_offers(settings: Settings, amount_micro: int, preferred_chain: str) -> list[Offer]:
    """One offer per chain whose USDC the gateway settles, ``preferred_chain`` first; none
    without a settler key."""
    if settings.settler_key is None:
        return []
    chains = sorted(settings.chains.values(), key=lambda c: c.name != preferred_chain)
    offers = []
    for chain in chains:
        token = chain.token(GASLESS_TOKEN)
        if token is not None and token.gasless:
            units = micro_usd_to_token_units(amount_micro, token.decimals)
            offers.append(Offer(chain, token, units))
    return offers


def x402_accept(offer: Offer, max_timeout_seconds: int) -> dict[str, Any]:
    """One x402 ``accepts`` entry (also what a credential's ``accepted`` must equal)."""
    return {
        "scheme": "exact",
        "network": f"eip155:{offer.chain.chain_id}",
        "asset": offer.token.address,
        "amount": str(offer.units),
        "payTo": offer.chain.pay_to,
        "maxTimeoutSeconds": max_timeout_seconds,
        "extra": {
            "assetTransferMethod": "eip3009",
            "name": offer.token.eip712_name,
            "version": offer.token.eip712_version,
        },
    }


def payment_required_header(
    offers: Sequence[Offer], context: RequestContext, max_timeout_seconds: int
) -> str:
    """``PAYMENT-REQUIRED``: standard base64 (the x402 clients refuse base64url)."""
    document = {
        "x402Version": X402_VERSION,
        "error": "Payment required",
        "resource": {"url": context.resource_url},
        "accepts": [x402_accept(offer, max_timeout_seconds) for offer in offers],
    }
    return base64.b64encode(_canonical(document)).decode("ascii")


def mpp_request(offer: Offer) -> str:
    """A challenge's ``request``: base64url (no padding) of canonical JSON, as mppx re-encodes
    it when it echoes the challenge, so the echo is byte-equal to what we signed."""
    return _b64url(
        _canonical(
            {
                "amount": str(offer.units),
                "currency": offer.token.address,
                "recipient": offer.chain.pay_to,
                "methodDetails": {
                    "chainId": offer.chain.chain_id,
                    "credentialTypes": ["authorization"],
                    "decimals": offer.token.decimals,
                },
            }
        )
    )


def body_digest(body_sha256: bytes) -> str:
    return "sha-256=" + base64.b64encode(body_sha256).decode("ascii")


def challenge_id(
    secret: bytes,
    *,
    realm: str,
    method: str,
    intent: str,
    request: str,
    expires: str,
    digest: str,
    route: str,
) -> str:
    mac = hmac.new(secret, digestmod="sha256")
    for part in (realm, method, intent, request, expires, digest, route):
        mac.update(part.encode("utf-8") + b"\x00")
    return _b64url(mac.digest())


def www_authenticate(
    offers: Sequence[Offer], context: RequestContext, secret: bytes, *, expires_at: float
) -> str:
    """The ``Payment`` challenges, comma-separated in one header value (how a fetch client
    sees several header lines anyway)."""
    expires = _rfc3339(expires_at)
    digest = body_digest(context.body_sha256)
    challenges = []
    for offer in offers:
        request = mpp_request(offer)
        cid = challenge_id(
            secret,
            realm=context.realm,
            method=MPP_METHOD,
            intent=MPP_INTENT,
            request=request,
            expires=expires,
            digest=digest,
            route=context.route,
        )
        params = {
            "id": cid,
            "realm": context.realm,
            "method": MPP_METHOD,
            "intent": MPP_INTENT,
            "request": request,
            "expires": expires,
            "digest": digest,
        }
        challenges.append("Payment " + ", ".join(f'{k}="{v}"' for k, v in params.items()))
    return ", ".join(challenges)


def mpp_nonce(challenge: str, realm: str) -> bytes:
    """The EIP-3009 nonce an MPP credential must carry: ``keccak256(utf8(id ‖ realm))``."""
    return keccak((challenge + realm).encode("utf-8"))


# --- credentials ----------------------------------------------------------------------------


def bind_mpp(
    credential: str,
    settings: Settings,
    context: RequestContext,
    secret: bytes,
    *,
    min_micro: int,
    now: float,
) -> BoundPayment:
    """An ``Authorization: Payment`` credential checked against the challenge it echoes."""
    token68 = credential.strip()
    if token68[:8].lower() == "payment ":
        token68 = token68[8:].strip()
    document = _document(token68, urlsafe=True)
    challenge = _object(document, "challenge")
    payload = _object(document, "payload")
    fields = {
        name: _string(challenge, name)
        for name in ("id", "realm", "method", "intent", "request", "expires", "digest")
    }
    expected = challenge_id(
        secret,
        realm=fields["realm"],
        method=fields["method"],
        intent=fields["intent"],
        request=fields["request"],
        expires=fields["expires"],
        digest=fields["digest"],
        route=context.route,
    )
    if not hmac.compare_digest(expected, fields["id"]) or fields["realm"] != context.realm:
        raise CredentialRefused(
            CredentialRefusal.UNKNOWN_CHALLENGE,
            "The credential's challenge was not issued by this gateway for this route",
        )
    expired = _parse_rfc3339(fields["expires"]) <= now
    if fields["digest"] != body_digest(context.body_sha256):
        raise CredentialRefused(
            CredentialRefusal.BODY_MISMATCH,
            "The request body is not the one the challenge was issued for",
        )
    request = _document(fields["request"], urlsafe=True)
    details = _object(request, "methodDetails")
    chain = _chain_by_id(settings, details.get("chainId"))
    token = _gasless_token(chain, _string(request, "currency"))
    if _string(payload, "type") != "authorization":
        raise CredentialRefused(
            CredentialRefusal.MALFORMED, "Only authorization (EIP-3009) credentials are accepted"
        )
    authorization = _authorization(payload, payload.get("signature"))
    if authorization.nonce != mpp_nonce(fields["id"], fields["realm"]):
        raise CredentialRefused(
            CredentialRefusal.NONCE_MISMATCH,
            "The authorization's nonce must be keccak256(challenge id || realm)",
        )
    source = document.get("source")
    if source is not None:
        expected_source = f"did:pkh:eip155:{chain.chain_id}:{authorization.payer}"
        if not isinstance(source, str) or source.lower() != expected_source.lower():
            raise CredentialRefused(
                CredentialRefusal.SOURCE_MISMATCH,
                f"The credential's source must be {expected_source}",
            )
    requested = _units(request.get("amount"), "request.amount")
    min_units = max(requested, micro_usd_to_token_units(min_micro, token.decimals))
    bound = BoundPayment("mpp", chain, token, authorization, min_units, fields["id"])
    if expired:
        raise CredentialRefused(
            CredentialRefusal.CHALLENGE_EXPIRED, "The challenge has expired", bound=bound
        )
    return bound


def bind_x402(
    credential: str,
    settings: Settings,
    context: RequestContext,
    *,
    min_micro: int,
    preferred_chain: str,
    max_timeout_seconds: int,
) -> BoundPayment:
    """A ``PAYMENT-SIGNATURE`` payload checked against this request's offers."""
    document = _document(credential.strip(), urlsafe=False)
    if document.get("x402Version") != X402_VERSION:
        raise CredentialRefused(CredentialRefusal.MALFORMED, "x402Version must be 2")
    resource = _object(document, "resource")
    if resource.get("url") != context.resource_url:
        raise CredentialRefused(
            CredentialRefusal.RESOURCE_MISMATCH,
            f"The payment is for {resource.get('url')!r}, not {context.resource_url}",
        )
    accepted = _object(document, "accepted")
    offers = {
        offer.chain.chain_id: offer
        for offer in gasless_offers(settings, min_micro, preferred_chain)
    }
    match = next(
        (offer for offer in offers.values() if accepted == x402_accept(offer, max_timeout_seconds)),
        None,
    )
    payload = _object(document, "payload")
    authorization = _authorization(_object(payload, "authorization"), payload.get("signature"))
    if match is None:
        raise CredentialRefused(
            CredentialRefusal.OFFER_MISMATCH,
            "The accepted requirements are not one of this request's offers "
            "(chain, asset, amount, payTo, maxTimeoutSeconds and extra must match exactly)",
            bound=_stale_offer(settings, accepted, authorization),
        )
    return BoundPayment("x402", match.chain, match.token, authorization, match.units, None)


def _stale_offer(
    settings: Settings, accepted: Mapping[str, Any], authorization: Authorization
) -> BoundPayment | None:
    """What an x402 payload for an offer we no longer make (a price or timeout changed since)
    would pay, if it names a chain, token and recipient we settle for."""
    network = accepted.get("network")
    if not isinstance(network, str) or not network.startswith("eip155:"):
        return None
    try:
        chain = _chain_by_id(settings, int(network.removeprefix("eip155:")))
        token = _gasless_token(chain, str(accepted.get("asset", "")))
    except (CredentialRefused, ValueError):
        return None
    if str(accepted.get("payTo", "")).lower() != chain.pay_to.lower():
        return None
    return BoundPayment("x402", chain, token, authorization, authorization.value, None)


# --- receipts -------------------------------------------------------------------------------


def payment_receipt(payment: BoundPayment, *, tx: str, timestamp: float) -> str:
    """``Payment-Receipt``: base64url JSON, what mppx's ``Receipt.fromResponse`` reads."""
    receipt: dict[str, Any] = {
        "status": "success",
        "method": MPP_METHOD,
        "reference": tx,
        "timestamp": _rfc3339(timestamp),
        "chainId": payment.chain.chain_id,
    }
    if payment.challenge_id is not None:
        receipt["challengeId"] = payment.challenge_id
    return _b64url(_canonical(receipt))


def payment_response(payment: BoundPayment, *, tx: str) -> str:
    """``PAYMENT-RESPONSE`` (x402): standard base64 JSON."""
    return base64.b64encode(
        _canonical(
            {
                "success": True,
                "transaction": tx,
                "network": payment.network,
                "payer": payment.authorization.payer,
            }
        )
    ).decode("ascii")


# --- helpers --------------------------------------------------------------------------------


def _canonical(document: Any) -> bytes:
    """JCS (RFC 8785) for the documents built here: sorted keys, no whitespace, integers and
    ASCII strings only, which is where JCS and ``json.dumps`` agree."""
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _rfc3339(at: float) -> str:
    return datetime.fromtimestamp(int(at), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_rfc3339(text: str) -> float:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise CredentialRefused(
            CredentialRefusal.MALFORMED, "The challenge's expires is not an RFC 3339 time"
        ) from None


def _document(text: str, *, urlsafe: bool) -> dict[str, Any]:
    if len(text) > MAX_CREDENTIAL_CHARS:
        raise CredentialRefused(CredentialRefusal.MALFORMED, "The credential is too large")
    try:
        padded = text + "=" * (-len(text) % 4)
        raw = (
            base64.urlsafe_b64decode(padded) if urlsafe else base64.b64decode(padded, validate=True)
        )
        document = loads(raw, max_depth=MAX_CREDENTIAL_DEPTH)
    except (binascii.Error, ValueError, JsonRefused):
        encoding = "base64url" if urlsafe else "base64"
        raise CredentialRefused(
            CredentialRefusal.MALFORMED, f"The credential is not {encoding} JSON"
        ) from None
    if not isinstance(document, dict):
        raise CredentialRefused(CredentialRefusal.MALFORMED, "The credential is not an object")
    return document


def _object(document: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = document.get(name)
    if not isinstance(value, dict):
        raise CredentialRefused(CredentialRefusal.MALFORMED, f"{name} must be an object")
    return value


def _string(document: Mapping[str, Any], name: str) -> str:
    value = document.get(name)
    if not isinstance(value, str):
        raise CredentialRefused(CredentialRefusal.MALFORMED, f"{name} must be a string")
    return value


def _units(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise CredentialRefused(CredentialRefusal.MALFORMED, f"{name} must be an integer")
    text = str(value)
    if not text.isdigit() or len(text) > 78:
        raise CredentialRefused(CredentialRefusal.MALFORMED, f"{name} must be an integer")
    return int(text)


def _address(value: Any, name: str) -> str:
    if not isinstance(value, str) or not is_address(value):
        raise CredentialRefused(CredentialRefusal.MALFORMED, f"{name} must be an address")
    return checksum_address(value)


def _hex_bytes(value: Any, name: str, *, size: int | None = None) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise CredentialRefused(CredentialRefusal.MALFORMED, f"{name} must be 0x-hex")
    try:
        raw = bytes.fromhex(value[2:])
    except ValueError:
        raise CredentialRefused(CredentialRefusal.MALFORMED, f"{name} must be 0x-hex") from None
    if (size is not None and len(raw) != size) or (size is None and not 0 < len(raw) <= 4096):
        raise CredentialRefused(CredentialRefusal.MALFORMED, f"{name} has the wrong length")
    return raw


def _authorization(fields: Mapping[str, Any], signature: Any) -> Authorization:
    return Authorization(
        payer=_address(fields.get("from"), "from"),
        to=_address(fields.get("to"), "to"),
        value=_units(fields.get("value"), "value"),
        valid_after=_units(fields.get("validAfter"), "validAfter"),
        valid_before=_units(fields.get("validBefore"), "validBefore"),
        nonce=_hex_bytes(fields.get("nonce"), "nonce", size=32),
        signature=_hex_bytes(signature, "signature"),
    )


def _chain_by_id(settings: Settings, chain_id: Any) -> ChainConfig:
    if isinstance(chain_id, int) and not isinstance(chain_id, bool):
        for chain in settings.chains.values():
            if chain.chain_id == chain_id:
                return chain
    raise CredentialRefused(
        CredentialRefusal.NOT_OFFERED, f"Chain {chain_id!r} is not offered for gasless payment"
    )


def _gasless_token(chain: ChainConfig, address: str) -> TokenConfig:
    for token in chain.tokens.values():
        if token.address.lower() == address.lower() and token.gasless:
            return token
    raise CredentialRefused(
        CredentialRefusal.NOT_OFFERED,
        f"Token {address} is not offered for gasless payment on {chain.name}",
    )
