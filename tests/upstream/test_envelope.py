"""The tolerant envelope parser: pure, no I/O."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.errors import GatewayError, Unavailable, UpstreamFailed
from gateway.upstream import (
    UpstreamError,
    UpstreamForbidden,
    UpstreamNameTaken,
    UpstreamNotFound,
    UpstreamRejected,
    UpstreamThrottled,
    UpstreamUnauthorized,
    parse_envelope,
    parse_retry_after,
)


def body(document: Any) -> bytes:
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("document", "payload"),
    [
        ({"status": "success", "data": {"id": "p1"}}, {"id": "p1"}),
        ({"success": True, "data": ["a"]}, ["a"]),
        ({"status": "success", "data": "deleting"}, "deleting"),
        ({"status": "success"}, None),
        ({"data": 3}, 3),
    ],
)
def test_success_returns_data(document: Any, payload: Any) -> None:
    assert parse_envelope(200, body(document)) == payload


def test_text_body_is_accepted() -> None:
    assert parse_envelope(201, '{"status":"success","data":{"id":"d"}}') == {"id": "d"}


def test_empty_204_is_success() -> None:
    assert parse_envelope(204, b"") is None


@pytest.mark.parametrize(
    ("status_code", "error_class"),
    [
        (400, UpstreamRejected),
        (401, UpstreamUnauthorized),
        (403, UpstreamForbidden),
        (404, UpstreamNotFound),
        (409, UpstreamNameTaken),
        (413, UpstreamRejected),
        (422, UpstreamRejected),
        (429, UpstreamThrottled),
        (500, UpstreamError),
        (503, UpstreamError),
    ],
)
def test_http_status_picks_the_error(status_code: int, error_class: type[UpstreamError]) -> None:
    with pytest.raises(error_class) as caught:
        parse_envelope(status_code, body({"status": "fail", "data": "boom"}))
    assert type(caught.value) is error_class
    assert caught.value.upstream_status == status_code


def test_http_error_fails_even_with_a_success_envelope() -> None:
    with pytest.raises(UpstreamNotFound):
        parse_envelope(404, body({"status": "success", "data": {"id": "x"}}))


def test_200_with_fail_is_a_failure() -> None:
    with pytest.raises(UpstreamRejected) as caught:
        parse_envelope(200, body({"status": "fail", "data": "Project is not active"}))
    assert caught.value.upstream_status == 200
    assert not caught.value.may_have_applied
    assert "Project is not active" in (caught.value.internal or "")


def test_200_with_success_false_is_a_failure() -> None:
    with pytest.raises(UpstreamRejected) as caught:
        parse_envelope(200, body({"success": False, "message": "nope"}))
    assert "nope" in (caught.value.internal or "")


def test_200_with_error_status_may_have_applied() -> None:
    with pytest.raises(UpstreamError) as caught:
        parse_envelope(200, body({"status": "error", "message": "db down"}))
    assert type(caught.value) is UpstreamError
    assert caught.value.may_have_applied


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"status": "fail", "data": "from data"}, "from data"),
        ({"status": "fail", "data": {"message": "from data.message"}}, "from data.message"),
        ({"status": "error", "message": "from message"}, "from message"),
        ({"success": False, "data": {"field": 1}, "message": "fallback"}, "fallback"),
        ({"status": "fail", "data": {"field": 1}}, "HTTP 400"),
        ({"status": "fail"}, "HTTP 400"),
    ],
)
def test_message_precedence(document: Any, message: str) -> None:
    with pytest.raises(UpstreamError) as caught:
        parse_envelope(400, body(document))
    assert (caught.value.internal or "").endswith(": " + message)


@pytest.mark.parametrize("raw", [b"<html>Bad Gateway</html>", b"", b"\xff\xfe", b"[1, 2]", b"7"])
def test_non_object_bodies_fail(raw: bytes) -> None:
    with pytest.raises(UpstreamError) as caught:
        parse_envelope(200, raw)
    # We cannot tell what a 2xx we cannot read did.
    assert caught.value.may_have_applied


def test_non_json_error_status_keeps_its_class() -> None:
    with pytest.raises(UpstreamError) as caught:
        parse_envelope(502, b"<html>nginx</html>")
    assert caught.value.upstream_status == 502
    assert caught.value.may_have_applied
    with pytest.raises(UpstreamNotFound):
        parse_envelope(404, b"Not Found")


def test_upstream_message_never_reaches_the_wire() -> None:
    secret = "internal host db-7.createos.local refused"
    for status_code in (200, 400, 403, 404, 409, 422, 429, 500):
        with pytest.raises(GatewayError) as caught:
            parse_envelope(status_code, body({"status": "fail", "data": secret}))
        error = caught.value
        assert secret not in error.public
        assert secret not in json.dumps(error.body())
        assert secret not in json.dumps(error.headers)
        assert secret in (error.internal or "")


def test_long_upstream_messages_are_truncated_for_the_log() -> None:
    with pytest.raises(UpstreamError) as caught:
        parse_envelope(400, body({"status": "fail", "data": "x" * 10_000}))
    assert len(caught.value.internal or "") < 700


def test_errors_render_as_502_or_503() -> None:
    with pytest.raises(UpstreamError) as not_found:
        parse_envelope(404, body({"status": "fail", "data": "no"}))
    assert isinstance(not_found.value, UpstreamFailed)
    assert not_found.value.status == 502
    assert "upstream_status" not in not_found.value.body()

    with pytest.raises(UpstreamThrottled) as throttled:
        parse_envelope(429, body({"status": "fail", "data": "quota"}))
    assert isinstance(throttled.value, Unavailable)
    assert isinstance(throttled.value, UpstreamError)
    assert throttled.value.status == 503


def test_throttled_honours_retry_after() -> None:
    with pytest.raises(UpstreamThrottled) as caught:
        parse_envelope(429, body({"status": "fail", "data": "slow down"}), retry_after="7")
    assert caught.value.retry_after == 7
    assert caught.value.upstream_retry_after == 7.0
    assert caught.value.headers == {"Retry-After": "7"}
    assert caught.value.body()["retry_after"] == 7


def test_throttled_defaults_to_30_seconds() -> None:
    with pytest.raises(UpstreamThrottled) as caught:
        parse_envelope(429, body({"status": "fail", "data": "slow down"}))
    assert caught.value.retry_after == 30
    assert caught.value.upstream_retry_after is None
    assert caught.value.headers == {"Retry-After": "30"}


def test_fractional_retry_after_rounds_up() -> None:
    with pytest.raises(UpstreamThrottled) as caught:
        parse_envelope(429, b"{}", retry_after="0.2")
    assert caught.value.retry_after == 1


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("5", 5.0),
        (" 2.5 ", 2.5),
        ("0", 0.0),
        (None, None),
        ("", None),
        ("-1", None),
        ("nan", None),
        ("inf", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", None),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value) == seconds
