"""Collecting a directory into a deploy ``upload``, leaving out what must never leave the machine.

Skipped: version-control and dependency folders (``.git``, ``node_modules``, ...), virtualenvs
(any folder holding ``pyvenv.cfg``), caches, symlinks (they may point outside the directory), and
secret files: ``.env`` and ``.env.*``, private keys (``*.pem``, ``*.key``, ``id_rsa``...), and
credential files. More than ``MAX_LISTED_FILES`` files are sent as one zip.
"""

from __future__ import annotations

import base64
import fnmatch
import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SKIPPED_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        "node_modules",
        ".venv",
        "venv",
        "__pycache__",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".tox",
        ".idea",
        ".DS_Store",
    }
)
SECRET_PATTERNS = (
    ".env", ".env.*", "*.pem", "*.key", "*.p12", "*.pfx", "*.jks", "*.keystore",
    "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*", "credentials", "credentials.*",
    "*credentials*.json", "service-account*.json", ".npmrc", ".pypirc", ".netrc",
    "secrets.*", ".secrets*",
)  # fmt: skip
MAX_LISTED_FILES = 2_000
MAX_TOTAL_BYTES = 50 * 1024 * 1024


class BundleError(ValueError):
    """The directory cannot be deployed as is (missing, empty, or too large)."""


def is_secret(name: str) -> bool:
    return any(fnmatch.fnmatch(name.lower(), pattern) for pattern in SECRET_PATTERNS)


@dataclass
class Bundle:
    """The files to upload (relative POSIX path -> bytes) and what was left out, and why."""

    files: dict[str, bytes] = field(default_factory=dict)
    skipped_secrets: list[str] = field(default_factory=list)
    skipped_other: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(len(data) for data in self.files.values())

    def upload(self) -> dict[str, Any]:
        """The ``upload`` field of a deploy body: a file list, or a zip above 2,000 files."""
        if len(self.files) <= MAX_LISTED_FILES:
            return {
                "type": "files",
                "files": [
                    {"path": path, "content": base64.b64encode(data).decode("ascii")}
                    for path, data in sorted(self.files.items())
                ],
            }
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path, data in sorted(self.files.items()):
                archive.writestr(path, data)
        return {
            "type": "zip",
            "data": base64.b64encode(buffer.getvalue()).decode("ascii"),
            "filename": "app.zip",
        }


def collect(directory: Path) -> Bundle:
    """Every regular file under ``directory`` except the skipped ones (module docstring).

    Raises ``BundleError`` when the directory is missing, holds nothing to deploy, or the files
    exceed 50 MB (the gateway's limit) — before anything is paid.
    """
    root = directory.resolve()
    if not root.is_dir():
        raise BundleError(f"{directory} is not a directory")
    bundle = Bundle()
    _walk(root, root, bundle)
    if not bundle.files:
        raise BundleError(f"{directory} has no files to deploy")
    if bundle.total_bytes > MAX_TOTAL_BYTES:
        raise BundleError(
            f"{directory} holds {bundle.total_bytes} bytes to deploy; the limit is 50 MB"
        )
    return bundle


def _walk(root: Path, folder: Path, bundle: Bundle) -> None:
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        relative = entry.relative_to(root).as_posix()
        if entry.is_symlink():
            bundle.skipped_other.append(relative)
        elif entry.is_dir():
            if entry.name in SKIPPED_DIRS or (entry / "pyvenv.cfg").exists():
                bundle.skipped_other.append(relative + "/")
            else:
                _walk(root, entry, bundle)
        elif entry.is_file():
            if is_secret(entry.name):
                bundle.skipped_secrets.append(relative)
            else:
                bundle.files[relative] = entry.read_bytes()
