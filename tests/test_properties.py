"""Property tests (hypothesis) of the pure parsers and conversions that hostile input reaches:
auth headers, X-Forwarded-For, Retry-After, X-Payment-* and X-Request-Id headers, tx-hash
canonicalisation, money scaling, upload paths, and log redaction."""

from __future__ import annotations

import ipaddress
import posixpath
import re
import string

import pytest
from eth_account import Account
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.datastructures import Headers

from gateway.access.auth import parse_auth_headers, recover_signer
from gateway.client.signing import auth_headers
from gateway.config import PROJECT_ROOT, load_settings
from gateway.deploy.validation import safe_path
from gateway.errors import AuthFailed, BadRequest, RateLimited
from gateway.logs import redact_text
from gateway.payments.quote import resolve_chain, resolve_token
from gateway.types import (
    MICRO_USD_PER_USD,
    canonical_tx_hash,
    micro_to_usd_string,
    micro_usd_to_token_units,
    token_units_to_micro_usd,
    usd_to_micro,
)
from gateway.upstream.envelope import parse_retry_after
from gateway.web.deploy import payment_headers
from gateway.web.middleware import client_ip, request_id_from

SETTINGS = load_settings(PROJECT_ROOT / "config" / "local.toml", {})
HEX = "0123456789abcdefABCDEF"
hex_text = st.text(alphabet=HEX, min_size=0, max_size=140)
wallet_headers = st.builds(lambda h: "0x" + h, st.text(alphabet=HEX, min_size=40, max_size=40))
any_header = st.text(max_size=300)
junk = st.one_of(any_header, hex_text, st.builds(lambda h: "0x" + h, hex_text))

# --- auth headers -----------------------------------------------------------------------------


@given(
    wallet=st.one_of(wallet_headers, junk),
    signature=st.one_of(
        st.builds(lambda h: "0x" + h, st.text(alphabet=HEX, min_size=130, max_size=130)), junk
    ),
    timestamp=st.one_of(st.integers(0, 10**16 - 1).map(str), junk),
    nonce=st.one_of(st.from_regex(r"\A[A-Za-z0-9_-]{8,128}\Z"), junk),
)
def test_auth_header_parser_accepts_exactly_the_documented_forms(
    wallet: str, signature: str, timestamp: str, nonce: str
) -> None:
    """Any text: either parsed (and the message is the raw values joined by ':') or a 401
    naming a rule; never another exception."""
    headers = {
        "x-wallet-address": wallet,
        "x-signature": signature,
        "x-timestamp": timestamp,
        "x-nonce": nonce,
    }
    well_formed = (
        re.fullmatch(r"0x[0-9a-fA-F]{40}", wallet)
        and re.fullmatch(r"0x(?:[0-9a-fA-F]{2}){65,2048}", signature)
        and re.fullmatch(r"[0-9]{1,16}", timestamp)
        and re.fullmatch(r"[A-Za-z0-9_-]{8,128}", nonce)
    )
    try:
        parsed, message = parse_auth_headers(headers)
    except AuthFailed as error:
        assert not well_formed
        assert error.status == 401
        assert error.fields["code"] in ("missing_header", "malformed_header")
        return
    assert well_formed
    assert message == f"{wallet}:{timestamp}:{nonce}"
    assert parsed.signature == bytes.fromhex(signature[2:])
    assert parsed.timestamp_ms == int(timestamp)


@settings(max_examples=25, deadline=None)
@given(nonce=st.from_regex(r"\A[A-Za-z0-9_-]{8,128}\Z"), ts=st.integers(0, 10**16 - 1))
def test_signed_headers_recover_to_the_signer_and_tampering_does_not(nonce: str, ts: int) -> None:
    account = Account.create()
    headers = {k.lower(): v for k, v in auth_headers(account, nonce=nonce, timestamp_ms=ts).items()}
    parsed, message = parse_auth_headers(headers)
    assert recover_signer(message, parsed.signature) == account.address.lower()
    assert recover_signer(message + "x", parsed.signature) != account.address.lower()


@given(signature=st.binary(min_size=0, max_size=80), message=st.text(max_size=100))
def test_recover_signer_never_raises_on_arbitrary_bytes(signature: bytes, message: str) -> None:
    recovered = recover_signer(message, signature)
    assert recovered is None or re.fullmatch(r"0x[0-9a-f]{40}", recovered)


# --- X-Forwarded-For --------------------------------------------------------------------------

TRUSTED = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128"))
ips = st.one_of(st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str))
hops = st.lists(st.one_of(ips, st.sampled_from(["10.1.2.3", "::1"]), any_header), max_size=6)


@given(peer=st.one_of(ips, st.sampled_from(["10.0.0.7", "::1"])), chain=hops)
def test_client_ip_believes_forwarded_for_only_from_trusted_proxies(
    peer: str, chain: list[str]
) -> None:
    header = ", ".join(chain)
    ip = client_ip(peer, header, TRUSTED)
    peer_trusted = any(ipaddress.ip_address(peer) in n for n in TRUSTED)
    if not peer_trusted:
        assert ip == peer
        return
    # From a trusted peer: the peer itself, or a real, untrusted address named in the header.
    assert ip == peer or (
        ip in [h.strip() for h in chain] and not any(ipaddress.ip_address(ip) in n for n in TRUSTED)
    )


@given(forwarded=any_header)
def test_client_ip_without_a_peer_or_header(forwarded: str) -> None:
    assert client_ip(None, forwarded, TRUSTED) == "unknown"
    assert client_ip("203.0.113.9", forwarded, ()) == "203.0.113.9"


# --- Retry-After ------------------------------------------------------------------------------


@given(value=st.one_of(st.none(), any_header, st.integers(-10, 10**6).map(str)))
def test_upstream_retry_after_is_none_or_a_finite_non_negative_number(value: str | None) -> None:
    seconds = parse_retry_after(value)
    assert seconds is None or (seconds >= 0 and seconds != float("inf") and seconds == seconds)
    if value is not None and value.strip().isdigit() and value.strip().isascii():
        assert seconds == float(value.strip())  # delta-seconds, as precise as a float is


@given(retry_after=st.integers(-(10**6), 10**9))
def test_our_retry_after_is_always_a_positive_integer(retry_after: int) -> None:
    error = RateLimited(retry_after)
    assert re.fullmatch(r"[1-9][0-9]*", error.headers["Retry-After"])
    assert error.fields["retry_after"] == int(error.headers["Retry-After"]) >= 1


# --- X-Payment-* and X-Request-Id ----------------------------------------------------------------


@given(chain=st.one_of(st.none(), any_header, st.sampled_from(["arbitrum", " BASE ", "Base"])))
def test_payment_chain_header_resolves_or_is_a_400_naming_it(chain: str | None) -> None:
    try:
        found = resolve_chain(SETTINGS, chain)
    except BadRequest as error:
        assert error.fields["field"] == "X-Payment-Chain"
        return
    assert found.name in SETTINGS.chains
    if chain is not None and chain.strip():
        assert found.name == chain.strip().lower()


@given(token=st.one_of(st.none(), any_header, st.sampled_from(["usdc", " USDT", "Usdc"])))
def test_payment_token_header_resolves_or_is_a_400_naming_it(token: str | None) -> None:
    chain = SETTINGS.chains["arbitrum"]
    try:
        found = resolve_token(chain, token)
    except BadRequest as error:
        assert error.fields["field"] == "X-Payment-Token"
        return
    assert found.key in chain.tokens


@given(
    tx=st.one_of(st.none(), any_header),
    chain=st.one_of(st.none(), any_header),
    opt_in=st.one_of(st.none(), st.sampled_from(["true", " TRUE ", "True", "yes", "1", ""])),
)
def test_payment_headers_are_read_verbatim_and_opt_in_only_by_true(
    tx: str | None, chain: str | None, opt_in: str | None
) -> None:
    raw = {"X-Payment-Tx": tx, "X-Payment-Chain": chain, "X-Use-Existing-Credits": opt_in}
    # What an HTTP server can hand over: latin-1 header values (as Starlette decodes them).
    headers = Headers(
        raw=[
            (name.lower().encode(), value.encode("latin-1"))
            for name, value in raw.items()
            if value is not None and value.strip() == value and _latin1(value)
        ]
    )
    parsed = payment_headers(headers)
    assert parsed.use_existing_credits == (
        headers.get("x-use-existing-credits", "").strip().lower() == "true"
    )
    assert parsed.tx in (None, headers.get("x-payment-tx", "").strip() or None)


def _latin1(value: str) -> bool:
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return "\r" not in value and "\n" not in value


@given(incoming=st.one_of(st.none(), any_header))
def test_request_id_is_always_a_safe_short_token(incoming: str | None) -> None:
    request_id = request_id_from(incoming)
    assert re.fullmatch(r"[A-Za-z0-9._:-]{1,64}", request_id)
    if incoming is not None and re.fullmatch(r"[A-Za-z0-9._:-]{1,64}", incoming):
        assert request_id == incoming


# --- tx hashes --------------------------------------------------------------------------------


@given(value=st.one_of(any_header, st.builds(lambda h: "0x" + h, hex_text)))
def test_canonical_tx_hash_is_lowercase_66_chars_or_none(value: str) -> None:
    canonical = canonical_tx_hash(value)
    if canonical is None:
        assert not re.fullmatch(r"0x[0-9a-fA-F]{64}", value)
        return
    assert re.fullmatch(r"0x[0-9a-f]{64}", canonical)
    assert canonical == value.lower()
    assert canonical_tx_hash(canonical) == canonical


@given(digits=st.text(alphabet=HEX, min_size=64, max_size=64), flips=st.lists(st.booleans()))
def test_every_case_variant_of_a_hash_claims_the_same_key(digits: str, flips: list[bool]) -> None:
    variant = "".join(
        c.upper() if i < len(flips) and flips[i] else c.lower() for i, c in enumerate(digits)
    )
    assert canonical_tx_hash("0x" + digits) == canonical_tx_hash("0x" + variant)
    assert canonical_tx_hash("0X" + digits) is None  # only the 0x prefix


# --- money ------------------------------------------------------------------------------------

micro_amounts = st.integers(0, 10**15)
decimals = st.integers(0, 30)


@given(micro=micro_amounts, places=decimals)
def test_quotes_round_up_and_never_undercharge(micro: int, places: int) -> None:
    units = micro_usd_to_token_units(micro, places)
    # ``units`` is the least amount of the token worth at least ``micro``.
    assert units * MICRO_USD_PER_USD >= micro * 10**places
    assert units == 0 or (units - 1) * MICRO_USD_PER_USD < micro * 10**places
    # Paying exactly the quote is always credited at least the quoted amount.
    assert token_units_to_micro_usd(units, places) >= micro


@given(units=st.integers(0, 10**40), places=decimals)
def test_credits_round_down_and_never_overcredit(units: int, places: int) -> None:
    micro = token_units_to_micro_usd(units, places)
    assert micro * 10**places <= units * MICRO_USD_PER_USD
    assert (micro + 1) * 10**places > units * MICRO_USD_PER_USD
    assert micro_usd_to_token_units(micro, places) <= units


@given(micro=st.integers(-(10**18) + 1, 10**18 - 1))
def test_usd_strings_round_trip_exactly(micro: int) -> None:
    assert usd_to_micro(micro_to_usd_string(micro)) == micro


@given(text=any_header)
def test_usd_parser_takes_only_decimal_strings(text: str) -> None:
    try:
        micro = usd_to_micro(text)
    except ValueError:
        return
    assert re.fullmatch(r"-?\d{1,12}(\.\d{1,6})?", text.strip())
    assert isinstance(micro, int)


def test_usd_parser_refuses_floats() -> None:
    with pytest.raises(ValueError):
        usd_to_micro(0.1)  # type: ignore[arg-type]


# --- upload paths -----------------------------------------------------------------------------

path_parts = st.sampled_from(["a", "b.js", ".", "..", "", "src", "C:", " ", "\\", "\x00", "é"])
paths = st.one_of(
    any_header,
    st.lists(path_parts, min_size=1, max_size=6).map("/".join),
    st.lists(path_parts, min_size=1, max_size=6).map(lambda p: "/" + "/".join(p)),
)


@given(value=paths)
def test_safe_path_output_never_leaves_the_upload_root(value: str) -> None:
    try:
        path = safe_path(value, "upload.files[0].path")
    except BadRequest as error:
        assert error.fields["field"] == "upload.files[0].path"
        return
    segments = path.split("/")
    assert "" not in segments and ".." not in segments and "." not in segments
    assert not path.startswith("/") and "\\" not in path
    assert not re.search(r"[\x00-\x1f\x7f-\x9f]", path)
    assert not re.match(r"[A-Za-z]:", path)
    root = "/srv/upload"
    assert posixpath.normpath(posixpath.join(root, path)).startswith(root + "/")
    assert safe_path(path, "again") == path  # normalised: a fixed point


# --- log redaction ----------------------------------------------------------------------------


@given(
    before=st.text(alphabet=string.ascii_letters + " :=,", max_size=20),
    after=st.text(alphabet=string.ascii_letters + " :=,", max_size=20),
    signature=st.text(alphabet=HEX, min_size=130, max_size=200),
    prefix=st.sampled_from(["", "0x"]),
)
def test_signatures_are_redacted_wherever_they_appear(
    before: str, after: str, signature: str, prefix: str
) -> None:
    text = redact_text(f"{before} {prefix}{signature} {after}")
    assert signature not in text
    assert signature[:130] not in text


@given(digits=st.text(alphabet="0123456789abcdef", min_size=64, max_size=64))
def test_tx_hashes_and_addresses_stay_readable(digits: str) -> None:
    line = f"payment 0x{digits} from 0x{digits[:40]} credited"
    assert redact_text(line) == line


@given(blob=st.binary(min_size=36, max_size=400))
def test_upload_content_blobs_are_redacted(blob: bytes) -> None:
    import base64

    content = base64.b64encode(blob).decode()
    assert content not in redact_text(f'{{"path": "a.js", "content": "{content}"}}')
