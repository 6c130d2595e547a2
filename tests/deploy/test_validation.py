"""gateway.deploy.validation: every rule of docs/PROTOCOL.md section 4 (validation), as pure
function calls."""

from __future__ import annotations

import base64
import io
import stat
import warnings
import zipfile
from typing import Any

import pytest

from gateway.config import Settings, load_settings
from gateway.deploy.validation import (
    DeployRequest,
    FilesUpload,
    ZipUpload,
    base64_decoded_size,
    check_base64,
    parse_json_object,
    safe_path,
    validate_deploy,
    validate_redeploy,
    validate_settings,
)
from gateway.errors import BadRequest
from tests.support import LOCAL_CONFIG


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings(LOCAL_CONFIG, {}).with_overrides(
        max_upload_files=20, max_upload_bytes=64 * 1024, max_body_bytes=128 * 1024
    )


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def body(**changes: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "uniqueName": "My-App-1",
        "displayName": "My App_1",
        "upload": {"type": "files", "files": [{"path": "index.js", "content": b64(b"hi")}]},
    }
    value.update(changes)
    return {k: v for k, v in value.items() if v is not MISSING}


MISSING: Any = object()


def rejected(settings: Settings, value: dict[str, Any]) -> tuple[str, str]:
    with pytest.raises(BadRequest) as caught:
        validate_deploy(value, settings)
    assert caught.value.status == 400
    wire = caught.value.body()
    assert set(wire) == {"error", "field"}
    return wire["field"], wire["error"]


def make_zip(entries: dict[str, bytes], *, symlink: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        if symlink is not None:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc/passwd")
    return buffer.getvalue()


def zip_body(data: bytes, **upload: Any) -> dict[str, Any]:
    return body(upload={"type": "zip", "data": b64(data), **upload})


# --- the whole body -------------------------------------------------------------------------


def test_a_valid_body_with_defaults(settings: Settings) -> None:
    result = validate_deploy(body(), settings)
    assert isinstance(result, DeployRequest)
    assert result.unique_name == "my-app-1"  # a subdomain: lowercase
    assert result.display_name == "My App_1"
    assert result.description is None
    assert result.months == 1
    assert result.settings == {
        "port": 3000,
        "hasDockerfile": False,
        "runtime": "build-ai",
        "useBuildAI": True,
    }
    assert isinstance(result.upload, FilesUpload)
    assert result.upload.files[0].path == "index.js"
    assert result.upload.files[0].size == 2
    assert result.upload.total_bytes == 2


@pytest.mark.parametrize("text", [b"", b"{", b"[1]", b'"text"', b"null", b"\xff"])
def test_body_must_be_a_json_object(text: bytes) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_json_object(text)
    assert caught.value.fields == {"field": "body"}


def test_unknown_top_level_field(settings: Settings) -> None:
    assert rejected(settings, body(month=2))[0] == "month"


# --- names, description, months -----------------------------------------------------------


@pytest.mark.parametrize(
    "value", [MISSING, None, "abc", "a" * 33, "has_underscore", "dot.name", "ünï", 1234]
)
def test_unique_name_rules(settings: Settings, value: Any) -> None:
    assert rejected(settings, body(uniqueName=value))[0] == "uniqueName"


@pytest.mark.parametrize("value", ["abcd", "a" * 32, "A-1-b"])
def test_unique_name_accepted(settings: Settings, value: str) -> None:
    assert validate_deploy(body(uniqueName=value), settings).unique_name == value.lower()


@pytest.mark.parametrize("value", [MISSING, "abc", "x" * 49, "semi;colon", "tab\there", 5])
def test_display_name_rules(settings: Settings, value: Any) -> None:
    assert rejected(settings, body(displayName=value))[0] == "displayName"


@pytest.mark.parametrize("value", ["abc", "x" * 2049, 42, ["list"]])
def test_description_rules(settings: Settings, value: Any) -> None:
    assert rejected(settings, body(description=value))[0] == "description"


def test_description_bounds_accepted(settings: Settings) -> None:
    assert validate_deploy(body(description="abcd"), settings).description == "abcd"
    assert validate_deploy(body(description="x" * 2048), settings).description == "x" * 2048


@pytest.mark.parametrize("value", [0, 25, -1, 1.0, 2.5, True, "3"])
def test_months_rules(settings: Settings, value: Any) -> None:
    field, message = rejected(settings, body(months=value))
    assert field == "months" and "1 to 24" in message


@pytest.mark.parametrize("value", [1, 12, 24])
def test_months_accepted(settings: Settings, value: int) -> None:
    assert validate_deploy(body(months=value), settings).months == value


# --- settings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ("not an object", "settings"),
        ({"colour": "red"}, "settings.colour"),
        ({"port": 0}, "settings.port"),
        ({"port": 65536}, "settings.port"),
        ({"port": "3000"}, "settings.port"),
        ({"port": True}, "settings.port"),
        ({"port": 80.0}, "settings.port"),
        ({"buildCommand": 5}, "settings.buildCommand"),
        ({"runCommand": "x" * 1025}, "settings.runCommand"),
        ({"installCommand": "npm\x00i"}, "settings.installCommand"),
        ({"hasDockerfile": "yes"}, "settings.hasDockerfile"),
        ({"useBuildAI": 1}, "settings.useBuildAI"),
        ({"buildVars": ["A=1"]}, "settings.buildVars"),
        ({"runEnvs": {"1BAD": "x"}}, "settings.runEnvs"),
        ({"runEnvs": {"GOOD": 1}}, "settings.runEnvs.GOOD"),
        ({"runEnvs": {"BIG": "x" * 4097}}, "settings.runEnvs.BIG"),
        ({"buildVars": {f"V{i}": "x" for i in range(101)}}, "settings.buildVars"),
        ({"runtime": "build-ai", "useBuildAI": False}, "settings.useBuildAI"),
        ({"runtime": "dockerfile"}, "settings.hasDockerfile"),
        ({"runtime": "node:20"}, "settings.framework"),
        ({"runtime": "", "framework": "next"}, "settings.runtime"),
    ],
)
def test_settings_rules(settings: Settings, value: Any, field: str) -> None:
    assert rejected(settings, body(settings=value))[0] == field


def test_settings_accepted_and_defaulted() -> None:
    assert validate_settings({"hasDockerfile": True})["runtime"] == "dockerfile"
    full = validate_settings(
        {
            "port": 8080,
            "runtime": "node:20",
            "framework": "nextjs",
            "buildCommand": "npm run build",
            "runCommand": "npm start",
            "installCommand": "npm ci",
            "buildDir": ".next",
            "directoryPath": ".",
            "useBuildAI": False,
            "buildVars": {"NODE_ENV": "production"},
            "runEnvs": {"_X": ""},
        }
    )
    assert full["port"] == 8080 and full["hasDockerfile"] is False
    assert full["useBuildAI"] is False and full["runEnvs"] == {"_X": ""}


# --- files uploads ----------------------------------------------------------------------------


def files(*entries: Any) -> dict[str, Any]:
    return body(upload={"type": "files", "files": list(entries)})


def entry(path: Any = "a.txt", content: Any = None) -> dict[str, Any]:
    return {"path": path, "content": b64(b"data") if content is None else content}


@pytest.mark.parametrize(
    ("upload", "field"),
    [
        (MISSING, "upload"),
        ("zip", "upload"),
        ({"type": "tarball"}, "upload.type"),
        ({"files": []}, "upload.type"),
        ({"type": "files"}, "upload.files"),
        ({"type": "files", "files": []}, "upload.files"),
        ({"type": "files", "files": {}}, "upload.files"),
        ({"type": "files", "files": [], "extra": 1}, "upload.extra"),
    ],
)
def test_upload_shape(settings: Settings, upload: Any, field: str) -> None:
    assert rejected(settings, body(upload=upload))[0] == field


@pytest.mark.parametrize(
    ("path", "rule"),
    [
        ("", "non-empty"),
        (None, "non-empty"),
        (7, "non-empty"),
        ("/etc/passwd", "relative"),
        ("C:/windows/x", "relative"),
        ("c:evil", "relative"),
        ("./C:/windows/x", "relative"),
        ("src\\main.js", "forward slashes"),
        ("../up.js", "'..'"),
        ("src/../../up.js", "'..'"),
        ("src//a.js", "empty segment"),
        ("src/", "empty segment"),
        ("nul\x00.js", "control"),
        ("new\nline.js", "control"),
        ("del\x7f.js", "control"),
        ("./.", "does not name a file"),
        ("a" * 513, "longer than 512"),
    ],
)
def test_unsafe_paths(settings: Settings, path: Any, rule: str) -> None:
    field, message = rejected(settings, files(entry(), entry(path)))
    assert field == "upload.files[1].path"
    assert rule in message


def test_paths_are_normalised_and_duplicates_caught(settings: Settings) -> None:
    assert safe_path("./src/./a.js", "f") == "src/a.js"
    field, message = rejected(settings, files(entry("src/a.js"), entry("./src/a.js")))
    assert field == "upload.files[1].path" and "more than once" in message
    # NFC and NFD spell the same name
    field, _ = rejected(settings, files(entry("caf\u00e9.txt"), entry("cafe\u0301.txt")))
    assert field == "upload.files[1].path"


@pytest.mark.parametrize(
    "content",
    ["not base64!", "QQ", "QQ==QQ==", "QQ=A", "Q Q==", "QUJD\n", "éé==", 12, None],
)
def test_content_must_be_strict_base64(settings: Settings, content: Any) -> None:
    item = {"path": "a.txt", "content": content}
    assert rejected(settings, files(entry("b.txt"), item))[0] == "upload.files[1].content"


def test_file_entry_keys(settings: Settings) -> None:
    assert rejected(settings, files("a.txt"))[0] == "upload.files[0]"
    assert rejected(settings, files({"path": "a"}))[0] == "upload.files[0].content"
    extra = {**entry(), "mode": "0644"}
    assert rejected(settings, files(extra))[0] == "upload.files[0].mode"


def test_file_count_limit(settings: Settings) -> None:
    many = [entry(f"f{i}.txt") for i in range(21)]
    field, message = rejected(settings, files(*many))
    assert field == "upload.files" and "20" in message
    assert validate_deploy(files(*many[:20]), settings).upload.total_bytes == 80


def test_total_decoded_size_limit(settings: Settings) -> None:
    half = b64(b"x" * (32 * 1024))
    assert validate_deploy(files(entry("a", half), entry("b", half)), settings)
    field, message = rejected(settings, files(entry("a", half), entry("b", half), entry("c")))
    assert field == "upload" and "65536" in message


def test_decoded_size_from_length() -> None:
    for data in (b"", b"a", b"ab", b"abc", b"abcd", bytes(1000)):
        assert base64_decoded_size(b64(data), "f") == len(data)


def test_base64_checked_across_chunks() -> None:
    big = b64(bytes(range(256)) * 20_000)  # several 1 MiB chunks
    check_base64(big, "f")
    broken = big[: 1 << 20] + "*" + big[(1 << 20) + 1 :]
    with pytest.raises(BadRequest):
        check_base64(broken, "f")
    padded_inside = big[: (1 << 20) - 4] + "QQ==" + big[1 << 20 :]
    with pytest.raises(BadRequest):
        check_base64(padded_inside, "f")


# --- zip uploads ------------------------------------------------------------------------------


def test_valid_zip(settings: Settings) -> None:
    data = make_zip({"index.js": b"1", "lib/": b"", "lib/a.js": b"22"})
    result = validate_deploy(zip_body(data, filename="site.zip"), settings).upload
    assert isinstance(result, ZipUpload)
    assert result.data == data and result.filename == "site.zip"
    assert result.file_count == 2 and result.uncompressed_bytes == 3


@pytest.mark.parametrize(
    ("data", "rule"),
    [
        (b"definitely not a zip", "not a valid zip"),
        (make_zip({}), "no files"),
        (make_zip({"../evil.sh": b"x"}), "'..'"),
        (make_zip({"/abs.sh": b"x"}), "relative"),
        (make_zip({"a\\b.js": b"x"}), "forward slashes"),
        (make_zip({"ok.js": b"x"}, symlink="link"), "symbolic link"),
        (make_zip({f"f{i}": b"x" for i in range(21)}), "more than 20 files"),
        (make_zip({"bomb.bin": bytes(65 * 1024)}), "unpacks to more than"),
    ],
)
def test_zip_rules(settings: Settings, data: bytes, rule: str) -> None:
    field, message = rejected(settings, zip_body(data))
    assert field == "upload.data"
    assert rule in message


def test_zip_with_a_corrupt_member(settings: Settings) -> None:
    data = bytearray(make_zip({"a.txt": b"hello hello hello hello" * 10}))
    offset = data.index(b"a.txt") + len("a.txt") + 2  # inside the deflated data
    data[offset] ^= 0xFF
    assert rejected(settings, zip_body(bytes(data)))[0] == "upload.data"


@pytest.mark.parametrize("second", ["./a.js", "a.js"])
def test_zip_duplicate_entries(settings: Settings, second: str) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.js", b"1")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zipfile warns about the exact duplicate
            archive.writestr(second, b"2")
    field, message = rejected(settings, zip_body(buffer.getvalue()))
    assert field == "upload.data" and "more than once" in message


@pytest.mark.parametrize(
    ("upload", "field"),
    [
        ({"type": "zip"}, "upload.data"),
        ({"type": "zip", "data": "@@@@"}, "upload.data"),
        ({"type": "zip", "data": b64(b"x" * (65 * 1024))}, "upload"),
        (
            {"type": "zip", "data": b64(make_zip({"a": b"1"})), "filename": "a/b.zip"},
            "upload.filename",
        ),
        ({"type": "zip", "data": b64(make_zip({"a": b"1"})), "filename": ""}, "upload.filename"),
        ({"type": "zip", "data": b64(make_zip({"a": b"1"})), "files": []}, "upload.files"),
    ],
)
def test_zip_fields(settings: Settings, upload: dict[str, Any], field: str) -> None:
    assert rejected(settings, body(upload=upload))[0] == field


# --- redeploy bodies ------------------------------------------------------------------------


def test_redeploy_body(settings: Settings) -> None:
    upload = {"type": "files", "files": [entry()]}
    result = validate_redeploy({"upload": upload, "months": 3}, settings)
    assert result.months == 3 and isinstance(result.upload, FilesUpload)
    with pytest.raises(BadRequest) as caught:
        validate_redeploy({"upload": upload, "uniqueName": "abcd"}, settings)
    assert caught.value.fields == {"field": "uniqueName"}
    with pytest.raises(BadRequest) as caught:
        validate_redeploy({}, settings)
    assert caught.value.fields == {"field": "upload"}
