"""The request rules the CreateOS simulator enforces, and the one error every rule raises.

Rules come from docs/UPSTREAM.md sections 3 and 7: naming (400), settings (400), file paths and
counts (400), pagination (400 below 1, ``limit`` capped at 20). No Starlette here: these are
plain functions over decoded JSON, so the handlers stay short and the rules read in one place.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

UNIQUE_NAME = re.compile(r"[a-zA-Z0-9-]{4,32}")
DISPLAY_NAME = re.compile(r"[a-zA-Z0-9 _-]{4,48}")
PROJECT_TYPES = ("upload", "vcs", "image")
PROJECT_STATUSES = ("active", "deleting", "deleted")
MAX_FILES_PER_JSON_UPLOAD = 100
DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 20
DEFAULT_LOG_SECONDS = 60

_STRING_SETTINGS = (
    "framework",
    "runtime",
    "directoryPath",
    "installCommand",
    "buildCommand",
    "buildDir",
    "runCommand",
)
_BOOL_SETTINGS = ("hasDockerfile", "useBuildAI")
_ENV_SETTINGS = ("buildVars", "runEnvs")


class SimulatorError(Exception):
    """A refusal, answered with ``status`` and ``message`` in the configured envelope."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers: dict[str, str] = dict(headers or {})


def bad_request(message: str) -> SimulatorError:
    return SimulatorError(400, message)


def check_unique_name(value: object) -> str:
    """Return the name lowercased: names are subdomains, compared and stored in lowercase."""
    if not isinstance(value, str) or not value:
        raise bad_request("uniqueName is required")
    if not UNIQUE_NAME.fullmatch(value):
        raise bad_request("uniqueName must be 4-32 characters of letters, digits and hyphens")
    return value.lower()


def check_display_name(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise bad_request("displayName is required")
    if not DISPLAY_NAME.fullmatch(value):
        raise bad_request(
            "displayName must be 4-48 characters of letters, digits, spaces, '_' and '-'"
        )
    return value


def check_description(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 4 <= len(value) <= 2048:
        raise bad_request("description must be 4-2048 characters")
    return value


def check_project_type(value: object) -> str:
    if value is None:
        return "upload"
    if value not in PROJECT_TYPES:
        raise bad_request(f"type must be one of {', '.join(PROJECT_TYPES)}")
    return str(value)


def check_settings(value: object, project_type: str) -> dict[str, Any]:
    """Validate the create body's ``settings`` (docs/UPSTREAM.md section 3, "Settings (upload)").

    For upload projects ``framework`` and ``runtime`` are both required, unless ``runtime`` is
    ``build-ai`` with ``useBuildAI: true`` or ``dockerfile`` with ``hasDockerfile: true``.
    """
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise bad_request("settings must be an object")
    settings: dict[str, Any] = value
    port = settings.get("port")
    if port is not None and (
        isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535
    ):
        raise bad_request("settings.port must be an integer from 1 to 65535")
    for key in _STRING_SETTINGS:
        if settings.get(key) is not None and not isinstance(settings[key], str):
            raise bad_request(f"settings.{key} must be a string")
    for key in _BOOL_SETTINGS:
        if settings.get(key) is not None and not isinstance(settings[key], bool):
            raise bad_request(f"settings.{key} must be a boolean")
    for key in _ENV_SETTINGS:
        env = settings.get(key)
        if env is None:
            continue
        if not isinstance(env, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in env.items()
        ):
            raise bad_request(f"settings.{key} must map strings to strings")
    if project_type == "upload":
        runtime = settings.get("runtime")
        if runtime == "build-ai":
            if settings.get("useBuildAI") is not True:
                raise bad_request('runtime "build-ai" requires settings.useBuildAI: true')
        elif runtime == "dockerfile":
            if settings.get("hasDockerfile") is not True:
                raise bad_request('runtime "dockerfile" requires settings.hasDockerfile: true')
        elif not settings.get("framework") or not runtime:
            raise bad_request("settings.framework and settings.runtime are required")
    return settings


def check_file_path(path: object) -> str:
    """A relative forward-slash path with no empty, ``.`` or ``..`` segment."""
    if not isinstance(path, str) or not path:
        raise bad_request("each file needs a non-empty path")
    if path.startswith("/") or "\\" in path or "\x00" in path:
        raise bad_request(f"file path {path!r} must be relative and use forward slashes")
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise bad_request(f"file path {path!r} has an empty, '.' or '..' segment")
    return path


def _non_negative_int(query: Mapping[str, str], key: str, default: int) -> int:
    raw = query.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"{key} must be an integer") from None
    if value < 0:
        raise bad_request(f"{key} must not be negative")
    return value


def parse_page(query: Mapping[str, str]) -> tuple[int, int]:
    """``(limit, offset)``: ``limit`` defaults to 10, is at least 1, and is capped at 20."""
    limit = _non_negative_int(query, "limit", DEFAULT_PAGE_SIZE)
    if limit < 1:
        raise bad_request("limit must be at least 1")
    return min(limit, MAX_PAGE_SIZE), _non_negative_int(query, "offset", 0)


def parse_skip(query: Mapping[str, str]) -> int:
    return _non_negative_int(query, "skip", 0)


def parse_since_seconds(query: Mapping[str, str]) -> int:
    return _non_negative_int(query, "since-seconds", DEFAULT_LOG_SECONDS)


def parse_choice(query: Mapping[str, str], key: str, choices: tuple[str, ...]) -> str | None:
    raw = query.get(key)
    if raw is None or raw == "":
        return None
    if raw not in choices:
        raise bad_request(f"{key} must be one of {', '.join(choices)}")
    return raw
