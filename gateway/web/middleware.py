"""Plain ASGI middleware: request id and access log, body-size limit, the /agent/* rate limit.

All answer before (or around) the router, so they render errors themselves.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import logging
import re
import secrets
import time
from collections.abc import Callable, Sequence

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.access.ratelimit import RateLimiter
from gateway.errors import GatewayError, PayloadTooLarge
from gateway.headers import FORWARDED_FOR, REQUEST_ID, WALLET_ADDRESS, raw_header
from gateway.logs import RequestContext, enter_request, leave_request
from gateway.types import is_address
from gateway.web.responses import send_error

_RAW_REQUEST_ID = raw_header(REQUEST_ID)
access_log = logging.getLogger("gateway.access")

#: An incoming X-Request-Id is reused only when it is a short token of these characters;
#: anything else (too long, spaces, control or non-ASCII characters) is replaced.
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


#: Fresh ids: a random per-process prefix and a counter. Unique across processes and restarts
#: without a urandom syscall per request (uuid4 was 2% of the authenticated path).
_ID_PREFIX = secrets.token_hex(6)
_id_counter = itertools.count(1)


def request_id_from(incoming: str | None) -> str:
    """The caller's ``X-Request-Id`` when it is a safe short token, else a fresh one."""
    if incoming is not None and _SAFE_REQUEST_ID.match(incoming):
        return incoming
    return f"{_ID_PREFIX}{next(_id_counter):020x}"  # 32 hex digits, like a uuid4 hex


class RequestContextMiddleware:
    """Outermost: gives every request an id (echoed in ``X-Request-Id`` on every response,
    errors included), makes it the logging context, and writes one access line per request
    (``status``, ``duration_ms``; ``wallet`` once authenticated).

    An exception nothing else handled (a bug) is logged with its traceback and answered here
    as a JSON 500 carrying the request id, never as a bare text page.
    """

    def __init__(self, app: ASGIApp, *, timer: Callable[[], float] = time.perf_counter) -> None:
        self.app = app
        self.timer = timer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(Headers(scope=scope).get(REQUEST_ID))
        context = RequestContext(request_id, scope["method"], scope["path"])
        token = enter_request(context)
        started = self.timer()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() != _RAW_REQUEST_ID
                ]
                headers.append((_RAW_REQUEST_ID, request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            access_log.exception("unhandled error")
            if status:
                raise  # the response had begun: nothing clean can be sent any more
            status = 500
            await send_error(send_with_id, GatewayError("Internal error", request_id=request_id))
        finally:
            access_log.info(
                "request",
                extra={"status": status, "duration_ms": round((self.timer() - started) * 1000, 2)},
            )
            leave_request(token)


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Routes that carry uploads get the configured (large) limit; every other route a small one.
_UPLOAD_PATHS = re.compile(r"^/agent/(deploy|projects/[^/]+/deploy)/?$")
SMALL_BODY_LIMIT = 64 * 1024


class BodyLimitMiddleware:
    """413 for bodies over the limit: at once from Content-Length, or as soon as the streamed
    body passes it, so an oversized body is never read whole."""

    def __init__(
        self, app: ASGIApp, *, max_upload_body: int, max_other_body: int = SMALL_BODY_LIMIT
    ) -> None:
        self.app = app
        self.max_upload_body = max_upload_body
        self.max_other_body = max_other_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_upload_body if _UPLOAD_PATHS.match(scope["path"]) else self.max_other_body
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            if not declared.isdigit():
                await send_error(send, GatewayError("Invalid Content-Length header", status=400))
                return
            if int(declared) > limit:
                await send_error(send, _too_large(limit))
                return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _too_large(limit)
            return message

        await self.app(scope, limited_receive, send)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"Request body exceeds the limit of {limit} bytes", code="body_too_large", limit=limit
    )


def client_ip(peer: str | None, forwarded_for: str | None, trusted: Sequence[IPNetwork]) -> str:
    """The client's IP: the peer, unless the peer is a trusted proxy, in which case the
    right-most ``X-Forwarded-For`` entry that is not itself a trusted proxy."""
    if peer is None:
        return "unknown"
    if not forwarded_for or not _is_trusted(peer, trusted):
        return peer
    for hop in reversed([h.strip() for h in forwarded_for.split(",")]):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer  # a malformed chain is not believed
        if not _is_trusted(hop, trusted):
            return hop
    return peer


def _is_trusted(ip: str, trusted: Sequence[IPNetwork]) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in network for network in trusted)


#: Routes whose handlers authenticate: their requests are counted by the authenticator, in the
#: same Redis round trip as the nonce (``RateLimiter.admit``).
_AUTHENTICATED_PATHS = re.compile(r"^/agent/(deploy|projects|credits)(/|$)")


class RateLimitMiddleware:
    """docs/PROTOCOL.md section 5 over every ``/agent/*`` route.

    Public ``/agent/*`` routes are counted here, before the handler. For authenticated routes
    the count is left to the authenticator (it stores the bucket in ``scope["state"]``); a
    request that never reached it (wrong method, say) is counted after the fact, so every
    request counts once.
    """

    def __init__(self, app: ASGIApp, *, trusted_proxies: Sequence[IPNetwork]) -> None:
        self.app = app
        self.trusted = tuple(trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/agent/"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        peer = scope.get("client")
        ip = client_ip(peer[0] if peer else None, headers.get(FORWARDED_FOR), self.trusted)
        wallet = headers.get(WALLET_ADDRESS, "")
        # Only a well-formed address names a bucket: arbitrary header text never becomes a key.
        wallet_key = wallet.lower() if is_address(wallet) else "-"
        limiter: RateLimiter = scope["app"].state.services.limiter
        if not _AUTHENTICATED_PATHS.match(scope["path"]):
            try:
                await limiter.hit(ip, wallet_key)
            except GatewayError as error:
                await send_error(send, error)
                return
            await self.app(scope, receive, send)
            return

        bucket = RateBucket(ip, wallet_key)
        scope.setdefault("state", {})["rate_bucket"] = bucket
        await self.app(scope, receive, send)
        if not bucket.counted:
            with contextlib.suppress(GatewayError):
                await limiter.hit(ip, wallet_key)


class RateBucket:
    """Which budget a request draws from; ``counted`` once the authenticator has counted it."""

    __slots__ = ("client_ip", "counted", "wallet_key")

    def __init__(self, client_ip: str, wallet_key: str) -> None:
        self.client_ip = client_ip
        self.wallet_key = wallet_key
        self.counted = False
