"""Typed CreateOS results, read tolerantly from envelope payloads.

Statuses stay plain strings: CreateOS may add values at any time, and an unknown one must
parse (and count as not live) rather than fail a deploy. Malformed payloads (a missing id,
a list where an object belongs) raise ``UpstreamError``, never ``KeyError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.upstream.errors import UpstreamError

__all__ = [
    "DEPLOYMENT_FAILED",
    "DEPLOYMENT_IN_PROGRESS",
    "DEPLOYMENT_LIVE",
    "BuildLogLine",
    "Deployment",
    "Project",
]

# Deployment statuses (docs/UPSTREAM.md section 4); spelled "queue", and there is no "failed".
DEPLOYMENT_IN_PROGRESS = frozenset({"queue", "building", "deploying"})
DEPLOYMENT_LIVE = "deployed"
DEPLOYMENT_FAILED = frozenset({"build_error", "error", "cancelled"})

_UNKNOWN_STATUS = "unknown"


@dataclass(frozen=True, slots=True)
class Project:
    id: str
    unique_name: str
    display_name: str
    status: str
    created_at: str | None
    type: str | None

    @classmethod
    def from_payload(cls, payload: Any) -> Project:
        fields = _object(payload, "project")
        return cls(
            id=_required_str(fields, "id", "project"),
            unique_name=_required_str(fields, "uniqueName", "project"),
            display_name=_optional_str(fields, "displayName") or "",
            status=_optional_str(fields, "status") or _UNKNOWN_STATUS,
            created_at=_optional_str(fields, "createdAt"),
            type=_optional_str(fields, "type"),
        )


@dataclass(frozen=True, slots=True)
class Deployment:
    """One deployment. ``endpoint`` is the live URL, always with a scheme, once it exists."""

    id: str
    status: str
    endpoint: str | None
    created_at: str | None
    version: int | None

    @property
    def is_live(self) -> bool:
        return self.status == DEPLOYMENT_LIVE

    @property
    def is_in_progress(self) -> bool:
        return self.status in DEPLOYMENT_IN_PROGRESS

    @property
    def is_failed(self) -> bool:
        """A terminal failure. ``crashing`` is not one: the caller decides on a grace period."""
        return self.status in DEPLOYMENT_FAILED

    @classmethod
    def from_payload(cls, payload: Any) -> Deployment:
        fields = _object(payload, "deployment")
        extra = fields.get("extra")
        endpoint = _optional_str(extra, "endpoint") if isinstance(extra, Mapping) else None
        # docs/UPSTREAM.md section 5: never build the URL from the name; take a top-level
        # ``url`` only if CreateOS ever sends one.
        endpoint = endpoint or _optional_str(fields, "url")
        return cls(
            id=_required_str(fields, "id", "deployment"),
            status=_optional_str(fields, "status") or _UNKNOWN_STATUS,
            endpoint=_with_scheme(endpoint) if endpoint else None,
            created_at=_optional_str(fields, "createdAt"),
            version=_optional_int(fields, "versionNumber"),
        )


@dataclass(frozen=True, slots=True)
class BuildLogLine:
    line_number: int
    log: str
    stage: str | None
    ts: str | None

    @classmethod
    def from_payload(cls, payload: Any, *, fallback_line_number: int) -> BuildLogLine:
        """``fallback_line_number`` numbers a line that came without ``lineNumber``."""
        fields = _object(payload, "build log line")
        line_number = _optional_int(fields, "lineNumber")
        return cls(
            line_number=fallback_line_number if line_number is None else line_number,
            log=_optional_str(fields, "log") or "",
            stage=_optional_str(fields, "stage"),
            ts=_optional_str(fields, "ts"),
        )


def _with_scheme(endpoint: str) -> str:
    if "://" in endpoint:
        return endpoint
    return "https://" + endpoint.lstrip("/")


def _object(payload: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(payload, Mapping):
        raise UpstreamError(
            internal=f"CreateOS sent a {what} that is not an object: {type(payload).__name__}",
            may_have_applied=True,
        )
    return payload


def _required_str(fields: Mapping[str, Any], key: str, what: str) -> str:
    value = _optional_str(fields, key)
    if not value:
        raise UpstreamError(
            internal=f"CreateOS sent a {what} without {key!r}", may_have_applied=True
        )
    return value


def _optional_str(fields: Mapping[str, Any], key: str) -> str | None:
    value = fields.get(key)
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)  # a numeric id or timestamp is still usable as text
    return None


def _optional_int(fields: Mapping[str, Any], key: str) -> int | None:
    value = fields.get(key)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None
