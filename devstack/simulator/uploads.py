"""Turn an upload body into a manifest: file names, sizes, and the failure marker if any.

Three wire forms (docs/UPSTREAM.md section 3): JSON ``{"files": [{"path", "content"}]}`` with text
or base64 content (at most 100 files), and a multipart zip in the field ``file``. Bad base64, a
corrupt zip or a malformed multipart body is a 400.

Memory: the caller holds the one raw body buffer. The multipart part is a ``memoryview`` into
it, and the zip is read through ``MemoryReader`` without copying; base64 contents are decoded one
file at a time and dropped once measured. Only a marker file's content is kept (truncated).

Markers: a file whose base name is ``SIMULATE_BUILD_ERROR``, ``SIMULATE_ERROR`` or
``SIMULATE_CRASH``, anywhere in the tree, forces that outcome; with several, the first in that
order wins.
"""

from __future__ import annotations

import base64
import binascii
import io
import zipfile
import zlib
from email.message import Message
from typing import Any

from devstack.simulator.model import Marker, Outcome, UploadedFile
from devstack.simulator.rules import (
    MAX_FILES_PER_JSON_UPLOAD,
    bad_request,
    check_file_path,
)

MARKERS: dict[str, Outcome] = {
    "SIMULATE_BUILD_ERROR": Outcome.BUILD_ERROR,
    "SIMULATE_ERROR": Outcome.ERROR,
    "SIMULATE_CRASH": Outcome.CRASHING,
}
MARKER_CONTENT_LIMIT = 4096
_MARKER_RANK = {outcome: rank for rank, outcome in enumerate(MARKERS.values())}


class UploadManifest:
    """What a deployment keeps of its upload."""

    def __init__(self) -> None:
        self.files: list[UploadedFile] = []
        self.marker: Marker | None = None
        self._paths: set[str] = set()

    def add(self, path: str, size: int) -> None:
        if path in self._paths:
            raise bad_request(f"file path {path!r} appears twice")
        self._paths.add(path)
        self.files.append(UploadedFile(path, size))

    def consider_marker(self, path: str, content: bytes) -> None:
        outcome = MARKERS.get(path.rsplit("/", 1)[-1])
        if outcome is None:
            return
        if self.marker is not None and _MARKER_RANK[self.marker.outcome] <= _MARKER_RANK[outcome]:
            return
        text = content[:MARKER_CONTENT_LIMIT].decode("utf-8", "replace").strip()
        self.marker = Marker(path=path, outcome=outcome, content=text)


def is_marker(path: str) -> bool:
    return path.rsplit("/", 1)[-1] in MARKERS


def manifest_from_json(body: Any, *, encoded: bool) -> UploadManifest:
    """``encoded``: contents are base64 (``/files/base64``) rather than text (``/files``)."""
    files = body.get("files") if isinstance(body, dict) else None
    if not isinstance(files, list):
        raise bad_request('body must be {"files": [{"path": ..., "content": ...}]}')
    if not files:
        raise bad_request("upload at least one file")
    if len(files) > MAX_FILES_PER_JSON_UPLOAD:
        raise bad_request(
            f"at most {MAX_FILES_PER_JSON_UPLOAD} files per upload; use upload-zip for more"
        )
    manifest = UploadManifest()
    for entry in files:
        if not isinstance(entry, dict):
            raise bad_request("each file must be an object with path and content")
        path = check_file_path(entry.get("path"))
        content = entry.get("content")
        if not isinstance(content, str):
            raise bad_request(f"file {path!r}: content must be a string")
        raw = _decode_base64(path, content) if encoded else _encode_text(path, content)
        manifest.add(path, len(raw))
        manifest.consider_marker(path, raw)
    return manifest


def _decode_base64(path: str, content: str) -> bytes:
    try:
        return base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError):
        raise bad_request(f"file {path!r}: content is not valid base64") from None


def _encode_text(path: str, content: str) -> bytes:
    try:
        return content.encode("utf-8")
    except UnicodeEncodeError:
        raise bad_request(f"file {path!r}: content is not valid text") from None


def multipart_field(body: bytes | bytearray, content_type: str, field: str) -> memoryview:
    """The bytes of form field ``field`` in a ``multipart/form-data`` body, without copying."""
    header = Message()
    header["content-type"] = content_type
    boundary = header.get_param("boundary")
    if header.get_content_type() != "multipart/form-data" or not isinstance(boundary, str):
        raise bad_request("expected a multipart/form-data body")
    delimiter = b"--" + boundary.encode("latin-1")
    position = body.find(delimiter)
    if position < 0:
        raise bad_request("malformed multipart body")
    while True:
        position += len(delimiter)
        if body[position : position + 2] == b"--":
            break
        if body[position : position + 2] != b"\r\n":
            raise bad_request("malformed multipart body")
        headers_end = body.find(b"\r\n\r\n", position + 2)
        if headers_end < 0:
            raise bad_request("malformed multipart body")
        part = Message()
        for line in bytes(body[position + 2 : headers_end]).decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            part[name.strip()] = value.strip()
        data_start = headers_end + 4
        data_end = body.find(b"\r\n" + delimiter, data_start)
        if data_end < 0:
            raise bad_request("malformed multipart body")
        if part.get_param("name", header="content-disposition") == field:
            return memoryview(body)[data_start:data_end]
        position = data_end + 2
    raise bad_request(f"multipart field {field!r} is required")


class MemoryReader(io.RawIOBase):
    """A seekable read-only file over a buffer, so ``zipfile`` reads it without a copy."""

    def __init__(self, view: memoryview) -> None:
        super().__init__()
        self._view = view
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._view)}
        position = base[whence] + offset
        if position < 0:
            raise OSError("negative seek position")
        self._position = position
        return position

    def readinto(self, buffer: Any) -> int:
        chunk = self._view[self._position : self._position + len(buffer)]
        buffer[: len(chunk)] = chunk
        self._position += len(chunk)
        return len(chunk)


def manifest_from_zip(data: memoryview) -> UploadManifest:
    """List the archive and check every member's CRC; directories are not files."""
    manifest = UploadManifest()
    try:
        with zipfile.ZipFile(MemoryReader(data)) as archive:
            corrupt = archive.testzip()
            if corrupt is not None:
                raise bad_request(f"zip member {corrupt!r} is corrupt")
            for info in archive.infolist():
                if info.is_dir():
                    continue
                path = check_file_path(info.filename)
                manifest.add(path, info.file_size)
                if is_marker(path):
                    with archive.open(info) as member:
                        manifest.consider_marker(path, member.read(MARKER_CONTENT_LIMIT))
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError):
        raise bad_request("file is not a valid zip archive") from None
    if not manifest.files:
        raise bad_request("the zip archive holds no files")
    return manifest
