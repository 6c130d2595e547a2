"""Errors of the CreateOS client, rooted in the gateway's error tree.

    gateway.errors.UpstreamFailed           502
    └── UpstreamError                      502  any CreateOS failure
        ├── UpstreamUnauthorized           502  401: our API key was refused
        ├── UpstreamForbidden              502  403: a project of another key
        ├── UpstreamNotFound               502  404: unknown project or deployment
        ├── UpstreamNameTaken              502  409: the unique name is taken
        ├── UpstreamRejected               502  other 4xx (400, 422), or 2xx with "fail"
        ├── UpstreamUnreachable            502  connect errors, timeouts, dropped connections
        └── UpstreamThrottled              503  429; also an ``Unavailable``, with Retry-After

Every class renders safely if nobody catches it: the public message is ours, and the
upstream's own message goes to ``internal`` (the log) only, because it may echo input or
name internals. Callers that know better (a 409 on create is a taken name; a 404 on a
project the user named is the user's 404) catch the specific class and raise their own.

``may_have_applied`` tells the deploy flow whether a failed write needs recovery: it is
false when the request never reached CreateOS (connect errors) or was refused (4xx), true
when CreateOS may have acted on it (5xx, read timeouts, dropped connections).
"""

from __future__ import annotations

from typing import Any

from gateway.errors import Unavailable, UpstreamFailed
from gateway.headers import RETRY_AFTER

__all__ = [
    "UpstreamError",
    "UpstreamForbidden",
    "UpstreamNameTaken",
    "UpstreamNotFound",
    "UpstreamRejected",
    "UpstreamThrottled",
    "UpstreamUnauthorized",
    "UpstreamUnreachable",
]


class UpstreamError(UpstreamFailed):
    """CreateOS failed. ``upstream_status`` is the HTTP status, ``None`` if none came back."""

    default_message = "The deploy service failed"

    def __init__(
        self,
        public: str | None = None,
        *,
        internal: str | None = None,
        upstream_status: int | None = None,
        may_have_applied: bool = False,
        headers: dict[str, str] | None = None,
        **fields: Any,
    ) -> None:
        super().__init__(public, internal=internal, headers=headers, **fields)
        self.upstream_status = upstream_status
        self.may_have_applied = may_have_applied
        # "METHOD /path" of the failed call, filled in by the client for the log.
        self.operation: str | None = None


class UpstreamUnauthorized(UpstreamError):
    """The API key was refused: an operator problem, so the public message stays generic."""


class UpstreamForbidden(UpstreamError):
    default_message = "The deploy service refused access to this project"


class UpstreamNotFound(UpstreamError):
    default_message = "The deploy service does not know this project or deployment"


class UpstreamNameTaken(UpstreamError):
    default_message = "This project name is already taken"


class UpstreamRejected(UpstreamError):
    default_message = "The deploy service rejected the request"


class UpstreamUnreachable(UpstreamError):
    default_message = "The deploy service could not be reached"


class UpstreamThrottled(Unavailable, UpstreamError):
    """CreateOS answered 429 (project quota, or its upload limit).

    ``retry_after`` is whole seconds for our own Retry-After header: the upstream's value
    when it sent one, else ``DEFAULT_RETRY_AFTER``. ``upstream_retry_after`` is what the
    upstream sent (``None`` if nothing usable), so the retry loop can tell the two apart.
    ``Unavailable`` comes first in the bases, so an uncaught one renders as 503.
    """

    DEFAULT_RETRY_AFTER = 30
    default_message = "The deploy service is busy; retry later"

    def __init__(
        self,
        upstream_retry_after: float | None = None,
        *,
        internal: str | None = None,
        upstream_status: int | None = 429,
    ) -> None:
        if upstream_retry_after is None:
            retry_after = self.DEFAULT_RETRY_AFTER
        else:
            retry_after = max(1, int(-(-upstream_retry_after // 1)))  # ceil, at least 1
        super().__init__(
            internal=internal,
            upstream_status=upstream_status,
            headers={RETRY_AFTER: str(retry_after)},
            retry_after=retry_after,
        )
        self.retry_after = retry_after
        self.upstream_retry_after = upstream_retry_after
