"""Validation of deploy bodies (docs/PROTOCOL.md section 4 (validation)): pure functions, no I/O.

Everything a deploy needs is checked here, before any quote, payment claim or upstream call,
so a request that CreateOS would refuse never costs the agent money. Each failure is a
``BadRequest`` whose body is ``{"error": <human message>, "field": <JSON path>}``, the path in
the form ``upload.files[3].path`` or ``settings.buildVars.NODE_ENV``.

Rules:

- the body is a JSON object nested at most ``MAX_BODY_DEPTH`` levels (``gateway.bounded_json``)
  with a closed set of keys (a misspelt ``month`` is an error, not a
  silent default); so are ``settings``, ``upload`` and each file entry;
- ``uniqueName`` 4-32 of ``[A-Za-z0-9-]`` (returned lowercase: it is a subdomain),
  ``displayName`` 4-48 of ``[A-Za-z0-9 _-]``, ``description`` 4-2048 characters;
- ``months`` an integer (not a bool, not a float) from 1 to ``pricing.max_months``, default 1;
- ``settings``: known keys only, typed and length-bounded, with the documented defaults
  (docs/PROTOCOL.md section 4) filled in
  (``port`` 3000, ``runtime`` "build-ai", ``useBuildAI`` true, ``hasDockerfile`` false) and
  CreateOS's combination rule applied: ``framework`` and ``runtime`` unless ``runtime`` is
  ``build-ai`` with ``useBuildAI`` or ``dockerfile`` with ``hasDockerfile``;
- ``upload`` ``{"type":"files","files":[{"path","content"}]}``: 1 to ``max_upload_files``
  files, safe relative paths (no absolute or drive path, no backslash, no ``..`` or empty
  segment, no control character, at most 512 characters, no duplicate after normalisation),
  contents strict base64;
- ``upload`` ``{"type":"zip","data","filename"?}``: strict base64 of a real zip whose entries
  are safe relative paths (no symlink, no encryption), at most ``max_upload_files`` files,
  every member readable with a correct CRC;
- the decoded upload is at most ``max_upload_bytes``; for a zip, so is the sum of its
  uncompressed sizes, counted while actually inflating (a zip bomb that lies in its headers is
  caught too).

Memory: a deploy body reaches ~65 MB. File contents stay the base64 ``str`` objects of the
parsed body (the upstream's base64 endpoint takes them as they are); their validity is checked
chunk by chunk, so no file is ever decoded whole. A zip is decoded once, and those bytes are
what gets uploaded.
"""

from __future__ import annotations

import binascii
import io
import re
import stat
import unicodedata
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway import bounded_json
from gateway.config import Settings
from gateway.errors import BadRequest

UNIQUE_NAME_RE = re.compile(r"[A-Za-z0-9-]{4,32}")
DISPLAY_NAME_RE = re.compile(r"[A-Za-z0-9 _-]{4,48}")
DESCRIPTION_LENGTH = (4, 2048)
#: The deepest body the schema has is 4 levels (``upload.files[].path``); anything nested
#: deeper than this is refused before a validator walks it.
MAX_BODY_DEPTH = 16
MAX_PATH_LENGTH = 512
MAX_SETTING_STRING = 1024
MAX_ENV_ENTRIES = 100
MAX_ENV_VALUE = 4096
MAX_ZIP_FILENAME = 255
DEFAULT_ZIP_FILENAME = "app.zip"
DEFAULT_PORT = 3000
DEFAULT_RUNTIME = "build-ai"

DEPLOY_KEYS = frozenset(
    {"uniqueName", "displayName", "description", "months", "settings", "upload"}
)
REDEPLOY_KEYS = frozenset({"upload", "months"})
STRING_SETTINGS = (
    "runtime",
    "framework",
    "buildCommand",
    "runCommand",
    "installCommand",
    "buildDir",
    "directoryPath",
)
BOOL_SETTINGS = ("hasDockerfile", "useBuildAI")
ENV_SETTINGS = ("buildVars", "runEnvs")
SETTINGS_KEYS = frozenset({"port", *STRING_SETTINGS, *BOOL_SETTINGS, *ENV_SETTINGS})

_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_DRIVE_RE = re.compile(r"^[A-Za-z]:")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_BASE64_CHUNK = 1 << 20  # characters per strict decode; a multiple of 4
_ZIP_READ_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class UploadFile:
    """One file of a ``files`` upload: its normalised path and its content as sent (base64)."""

    path: str
    content_base64: str
    size: int  # decoded bytes


@dataclass(frozen=True, slots=True)
class FilesUpload:
    files: tuple[UploadFile, ...]
    total_bytes: int  # decoded


@dataclass(frozen=True, slots=True)
class ZipUpload:
    """A ``zip`` upload: the decoded archive, uploaded as it is."""

    data: bytes
    filename: str
    file_count: int
    uncompressed_bytes: int


Upload = FilesUpload | ZipUpload


@dataclass(frozen=True, slots=True)
class DeployRequest:
    """A valid ``POST /agent/deploy`` body. ``settings`` has the defaults filled in."""

    unique_name: str  # lowercase
    display_name: str
    description: str | None
    months: int
    settings: Mapping[str, Any]
    upload: Upload


@dataclass(frozen=True, slots=True)
class RedeployRequest:
    """A valid ``POST /agent/projects/{projectId}/deploy`` body."""

    months: int
    upload: Upload


def invalid(message: str, field: str) -> BadRequest:
    """The 400 of this module: ``{"error": message, "field": field}``."""
    return BadRequest(message, field=field)


def parse_json_object(text: str | bytes | bytearray) -> dict[str, Any]:
    """The body as a JSON object; 400 for anything else (invalid JSON, an array, nesting
    deeper than ``MAX_BODY_DEPTH``), whatever the interpreter's recursion limit."""
    try:
        body = bounded_json.loads(text, max_depth=MAX_BODY_DEPTH)
    except bounded_json.JsonRefused as exc:
        if exc.too_deep:
            raise invalid(
                f"The body nests arrays/objects deeper than {MAX_BODY_DEPTH} levels", "body"
            ) from None
        raise invalid("The body is not valid JSON", "body") from None
    if not isinstance(body, dict):
        raise invalid("The body must be a JSON object", "body")
    return body


def validate_deploy(body: Mapping[str, Any], settings: Settings) -> DeployRequest:
    """Check a deploy body against every rule of the module docstring, in field order."""
    _closed(body, DEPLOY_KEYS, "")
    unique_name = _unique_name(body.get("uniqueName"))
    display_name = _display_name(body.get("displayName"))
    description = _description(body.get("description"))
    months = _months(body.get("months"), settings)
    project_settings = validate_settings(body.get("settings"))
    upload = validate_upload(body.get("upload"), settings)
    return DeployRequest(
        unique_name=unique_name,
        display_name=display_name,
        description=description,
        months=months,
        settings=project_settings,
        upload=upload,
    )


def validate_redeploy(body: Mapping[str, Any], settings: Settings) -> RedeployRequest:
    """Check a redeploy body: ``upload`` (required) and ``months`` (default 1)."""
    _closed(body, REDEPLOY_KEYS, "")
    months = _months(body.get("months"), settings)
    return RedeployRequest(months=months, upload=validate_upload(body.get("upload"), settings))


# --- naming and months ----------------------------------------------------------------------


def _unique_name(value: Any) -> str:
    if value is None:
        raise invalid("uniqueName is required", "uniqueName")
    if not isinstance(value, str) or not UNIQUE_NAME_RE.fullmatch(value):
        raise invalid(
            "uniqueName must be 4-32 characters of letters, digits and hyphens", "uniqueName"
        )
    return value.lower()


def _display_name(value: Any) -> str:
    if value is None:
        raise invalid("displayName is required", "displayName")
    if not isinstance(value, str) or not DISPLAY_NAME_RE.fullmatch(value):
        raise invalid(
            "displayName must be 4-48 characters of letters, digits, spaces, '_' and '-'",
            "displayName",
        )
    return value


def _description(value: Any) -> str | None:
    if value is None:
        return None
    low, high = DESCRIPTION_LENGTH
    if not isinstance(value, str) or not low <= len(value) <= high:
        raise invalid(f"description must be a string of {low}-{high} characters", "description")
    return value


def _months(value: Any, settings: Settings) -> int:
    if value is None:
        return 1
    high = settings.pricing.max_months
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise invalid(f"months must be an integer from 1 to {high}", "months")
    return value


# --- settings -------------------------------------------------------------------------------


def validate_settings(value: Any) -> dict[str, Any]:
    """Known keys only, typed and bounded; returns a new dict with the defaults filled in."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise invalid("settings must be an object", "settings")
    _closed(value, SETTINGS_KEYS, "settings")
    result: dict[str, Any] = {}
    port = value.get("port", DEFAULT_PORT)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise invalid("settings.port must be an integer from 1 to 65535", "settings.port")
    result["port"] = port
    for key in STRING_SETTINGS:
        if value.get(key) is not None:
            result[key] = _bounded_text(value[key], f"settings.{key}", MAX_SETTING_STRING)
    for key in BOOL_SETTINGS:
        if value.get(key) is not None:
            if not isinstance(value[key], bool):
                raise invalid(f"settings.{key} must be true or false", f"settings.{key}")
            result[key] = value[key]
    for key in ENV_SETTINGS:
        if value.get(key) is not None:
            result[key] = _env_map(value[key], f"settings.{key}")

    result.setdefault("hasDockerfile", False)
    result.setdefault("runtime", "dockerfile" if result["hasDockerfile"] else DEFAULT_RUNTIME)
    result.setdefault("useBuildAI", result["runtime"] == DEFAULT_RUNTIME)
    runtime = result["runtime"]
    if runtime == DEFAULT_RUNTIME and result["useBuildAI"] is not True:
        raise invalid('runtime "build-ai" requires useBuildAI: true', "settings.useBuildAI")
    if runtime == "dockerfile" and result["hasDockerfile"] is not True:
        raise invalid('runtime "dockerfile" requires hasDockerfile: true', "settings.hasDockerfile")
    if runtime not in (DEFAULT_RUNTIME, "dockerfile"):
        if not runtime:
            raise invalid("settings.runtime must not be empty", "settings.runtime")
        if not result.get("framework"):
            raise invalid(
                f"settings.framework is required with runtime {runtime!r}", "settings.framework"
            )
    return result


def _bounded_text(value: Any, field: str, limit: int) -> str:
    if not isinstance(value, str):
        raise invalid(f"{field} must be a string", field)
    if len(value) > limit:
        raise invalid(f"{field} must be at most {limit} characters", field)
    if "\x00" in value:
        raise invalid(f"{field} must not contain NUL characters", field)
    return value


def _env_map(value: Any, field: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise invalid(f"{field} must be an object of string values", field)
    if len(value) > MAX_ENV_ENTRIES:
        raise invalid(f"{field} has more than {MAX_ENV_ENTRIES} entries", field)
    result: dict[str, str] = {}
    for name, text in value.items():
        if not _ENV_NAME_RE.fullmatch(name):
            raise invalid(
                f"{field}: {name[:64]!r} is not a variable name "
                "(letters, digits and '_', not starting with a digit, at most 128)",
                field,
            )
        result[name] = _bounded_text(text, f"{field}.{name}", MAX_ENV_VALUE)
    return result


# --- uploads --------------------------------------------------------------------------------


def validate_upload(value: Any, settings: Settings) -> Upload:
    """A ``files`` or ``zip`` upload within the configured count and size limits."""
    if value is None:
        raise invalid("upload is required", "upload")
    if not isinstance(value, dict):
        raise invalid("upload must be an object", "upload")
    kind = value.get("type")
    if kind == "files":
        _closed(value, frozenset({"type", "files"}), "upload")
        return _files_upload(value.get("files"), settings)
    if kind == "zip":
        _closed(value, frozenset({"type", "data", "filename"}), "upload")
        return _zip_upload(value.get("data"), value.get("filename"), settings)
    raise invalid('upload.type must be "files" or "zip"', "upload.type")


def _files_upload(files: Any, settings: Settings) -> FilesUpload:
    limit_files, limit_bytes = settings.max_upload_files, settings.max_upload_bytes
    if not isinstance(files, list) or not files:
        raise invalid("upload.files must be a non-empty array", "upload.files")
    if len(files) > limit_files:
        raise invalid(f"upload.files has more than {limit_files} files", "upload.files")
    seen: set[str] = set()
    validated: list[UploadFile] = []
    total = 0
    for index, entry in enumerate(files):
        field = f"upload.files[{index}]"
        if not isinstance(entry, dict):
            raise invalid(f"{field} must be an object with path and content", field)
        _closed(entry, frozenset({"path", "content"}), field)
        path = safe_path(entry.get("path"), f"{field}.path")
        _no_duplicate(path, seen, f"{field}.path")
        content = _base64_text(entry.get("content"), f"{field}.content")
        size = base64_decoded_size(content, f"{field}.content")
        total += size
        # Sizes are known from the lengths: fail before checking a single character.
        if total > limit_bytes:
            raise invalid(f"the upload exceeds {limit_bytes} bytes decoded", "upload")
        validated.append(UploadFile(path=path, content_base64=content, size=size))
    for index, upload_file in enumerate(validated):
        check_base64(upload_file.content_base64, f"upload.files[{index}].content")
    return FilesUpload(files=tuple(validated), total_bytes=total)


def _zip_upload(data: Any, filename: Any, settings: Settings) -> ZipUpload:
    limit_bytes = settings.max_upload_bytes
    data = _base64_text(data, "upload.data")
    size = base64_decoded_size(data, "upload.data")
    if size > limit_bytes:
        raise invalid(f"the upload exceeds {limit_bytes} bytes decoded", "upload")
    name = DEFAULT_ZIP_FILENAME if filename is None else _zip_filename(filename)
    try:
        archive_bytes = binascii.a2b_base64(data, strict_mode=True)
    except (binascii.Error, ValueError):
        raise invalid("upload.data is not valid base64", "upload.data") from None
    file_count, uncompressed = check_zip(
        archive_bytes, max_files=settings.max_upload_files, max_bytes=limit_bytes
    )
    return ZipUpload(
        data=archive_bytes, filename=name, file_count=file_count, uncompressed_bytes=uncompressed
    )


def _zip_filename(value: Any) -> str:
    field = "upload.filename"
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_ZIP_FILENAME:
        raise invalid(f"{field} must be 1-{MAX_ZIP_FILENAME} characters", field)
    if "/" in value or "\\" in value or _CONTROL_RE.search(value):
        raise invalid(f"{field} must be a plain file name", field)
    return value


def safe_path(value: Any, field: str) -> str:
    """A safe relative forward-slash path, normalised (``.`` segments dropped)."""
    if not isinstance(value, str) or not value:
        raise invalid(f"{field} must be a non-empty string", field)
    if len(value) > MAX_PATH_LENGTH:
        raise invalid(f"{field} is longer than {MAX_PATH_LENGTH} characters", field)
    if _CONTROL_RE.search(value):
        raise invalid(f"{field} contains a control character", field)
    if value.startswith("/") or _DRIVE_RE.match(value):
        raise invalid(f"{field} must be a relative path", field)
    if "\\" in value:
        raise invalid(f"{field} must use forward slashes", field)
    segments = value.split("/")
    if "" in segments:
        raise invalid(f"{field} has an empty segment", field)
    if ".." in segments:
        raise invalid(f"{field} must not contain '..'", field)
    kept = [segment for segment in segments if segment != "."]
    if not kept:
        raise invalid(f"{field} does not name a file", field)
    normalised = "/".join(kept)
    if _DRIVE_RE.match(normalised):  # "./C:/x" becomes a drive path once "." is dropped
        raise invalid(f"{field} must be a relative path", field)
    return normalised


def _no_duplicate(path: str, seen: set[str], field: str) -> None:
    key = unicodedata.normalize("NFC", path)
    if key in seen:
        raise invalid(f"{field}: {path!r} appears more than once", field)
    seen.add(key)


def _base64_text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise invalid(f"{field} must be a base64 string", field)
    return value


def base64_decoded_size(value: str, field: str) -> int:
    """Bytes that a base64 text decodes to, from its length alone (shape checked, not content).

    Strict base64 is a multiple of 4 characters with at most two ``=`` at the very end.
    """
    length = len(value)
    if length % 4:
        raise invalid(f"{field} is not valid base64", field)
    padding = 2 if value.endswith("==") else 1 if value.endswith("=") else 0
    return length // 4 * 3 - padding


def check_base64(value: str, field: str) -> None:
    """Strict base64 (``binascii.a2b_base64(strict_mode=True)``), decoded chunk by chunk and
    discarded, so checking a 60 MB content allocates ~1 MB at a time."""
    # Padding only at the very end: a chunk alone cannot tell (find does not copy the text).
    if value.find("=", 0, max(0, len(value) - 2)) != -1:
        raise invalid(f"{field} is not valid base64", field)
    try:
        for start in range(0, len(value), _BASE64_CHUNK):
            binascii.a2b_base64(value[start : start + _BASE64_CHUNK], strict_mode=True)
    except (binascii.Error, ValueError):
        raise invalid(f"{field} is not valid base64", field) from None


def check_zip(data: bytes, *, max_files: int, max_bytes: int) -> tuple[int, int]:
    """Return ``(files, uncompressed bytes)`` of a safe zip, or raise the 400 naming why.

    Every member is inflated (in chunks, discarded) so a corrupt member or a lying size header
    fails here rather than upstream after payment; inflating stops once ``max_bytes`` is passed.
    """
    field = "upload.data"
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = archive.infolist()
            files = [info for info in entries if not info.is_dir()]
            if not files:
                raise invalid("the zip holds no files", field)
            if len(files) > max_files or len(entries) > 2 * max_files:
                raise invalid(f"the zip holds more than {max_files} files", field)
            declared = sum(info.file_size for info in files)
            if declared > max_bytes:
                raise invalid(f"the zip unpacks to more than {max_bytes} bytes", field)
            seen: set[str] = set()
            for info in entries:
                _check_zip_entry(info, seen, field)
            inflated = 0
            for info in files:
                with archive.open(info) as member:
                    while chunk := member.read(_ZIP_READ_CHUNK):
                        inflated += len(chunk)
                        if inflated > max_bytes:
                            raise invalid(f"the zip unpacks to more than {max_bytes} bytes", field)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, OSError):
        raise invalid("upload.data is not a valid zip archive", field) from None
    return len(files), inflated


def _check_zip_entry(info: zipfile.ZipInfo, seen: set[str], field: str) -> None:
    name = info.filename
    if stat.S_ISLNK(info.external_attr >> 16):
        raise invalid(f"zip entry {name[:100]!r} is a symbolic link", field)
    if info.flag_bits & 0x1:
        raise invalid(f"zip entry {name[:100]!r} is encrypted", field)
    path = name[:-1] if info.is_dir() else name
    try:
        normalised = safe_path(path, field)
    except BadRequest as exc:
        raise invalid(f"zip entry {name[:100]!r}: {_rule_of(exc)}", field) from None
    if not info.is_dir():
        _no_duplicate(normalised, seen, field)


def _rule_of(error: BadRequest) -> str:
    """The rule part of a ``safe_path`` message ("... must be a relative path")."""
    return error.public.removeprefix("upload.data").strip()


def _closed(value: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    for key in value:
        if key not in allowed:
            shown = key[:64]  # an unknown key is caller text of any length: echo a bounded part
            field = f"{where}.{shown}" if where else shown
            raise invalid(f"Unknown field {field!r}", field)
