"""The gateway's one error tree. Each class carries its HTTP status and public message.

    GatewayError                       (status, public message, optional machine fields)
    ├── BadRequest              400    invalid input; names the field
    ├── AuthFailed              401    wallet signature rules, admin token (PROTOCOL.md s. 2)
    ├── PaymentRequired         402    quotes, failed verification, pending payments
    ├── Forbidden               403    not the owner
    ├── NotFound                404    unknown route or resource
    ├── MethodNotAllowed        405
    ├── Conflict                409    tx already used, name taken
    ├── PayloadTooLarge         413
    ├── RateLimited             429    carries Retry-After
    ├── UpstreamFailed          502    CreateOS failed
    └── Unavailable             503    Redis, every RPC of a chain, upstream throttling

    ConfigError                        invalid configuration at start-up (not an HTTP error)

The ``public`` message and ``fields`` go on the wire as ``{"error": public, **fields}``; the
``internal`` detail goes to the log only. Third-party exceptions are mapped to these at the
adapter boundary and never leak upward.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from gateway.headers import RETRY_AFTER


class GatewayError(Exception):
    """Base of every error the gateway answers with."""

    status: int = 500
    default_message: ClassVar[str] = "Internal error"

    def __init__(
        self,
        public: str | None = None,
        *,
        internal: str | None = None,
        headers: Mapping[str, str] | None = None,
        status: int | None = None,
        **fields: Any,
    ) -> None:
        if status is not None:
            self.status = status
        self.public = public or self.default_message
        self.internal = internal
        self.headers: dict[str, str] = dict(headers or {})
        self.fields: dict[str, Any] = fields
        super().__init__(internal or self.public)

    def body(self) -> dict[str, Any]:
        """The JSON body on the wire."""
        return {"error": self.public, **self.fields}


class BadRequest(GatewayError):
    status: int = 400
    default_message = "Invalid request"


class AuthFailed(GatewayError):
    status: int = 401
    default_message = "Authentication failed"


class PaymentRequired(GatewayError):
    status: int = 402
    default_message = "Payment required"
    #: ``(micro-USD, preferred chain)`` when the answer offers a payment: the web layer adds
    #: the protocol challenges for it (never on a pending payment: nothing to pay again).
    offer: tuple[int, str] | None = None

    def offering(self, amount_micro: int, chain: str) -> PaymentRequired:
        self.offer = (amount_micro, chain)
        return self


class Forbidden(GatewayError):
    status: int = 403
    default_message = "Not the owner of this resource"


class NotFound(GatewayError):
    status: int = 404
    default_message = "Not found"


class MethodNotAllowed(GatewayError):
    status: int = 405
    default_message = "Method not allowed"


class Conflict(GatewayError):
    status: int = 409
    default_message = "Conflict"


class PayloadTooLarge(GatewayError):
    status: int = 413
    default_message = "Request body too large"


class RateLimited(GatewayError):
    status: int = 429
    default_message = "Rate limit exceeded"

    def __init__(self, retry_after_seconds: int, **kwargs: Any) -> None:
        headers = {RETRY_AFTER: str(max(1, retry_after_seconds))}
        super().__init__(headers=headers, retry_after=max(1, retry_after_seconds), **kwargs)


class UpstreamFailed(GatewayError):
    status: int = 502
    default_message = "Upstream service failed"


class Unavailable(GatewayError):
    status: int = 503
    default_message = "Service temporarily unavailable"


class ConfigError(Exception):
    """Invalid configuration; the message names the offending key."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"invalid configuration: {key}: {problem}")
