"""Plain value types shared by every layer: money units, addresses, tx hashes, the clock.

Money is integers only: token amounts in base units, USD in micro-USD (1 USD = 1_000_000).
Credits are a display unit: 1 USD = 100 credits, so 1 credit = 10_000 micro-USD.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import NewType

MICRO_USD_PER_USD = 1_000_000
CREDITS_PER_USD = 100
MICRO_USD_PER_CREDIT = MICRO_USD_PER_USD // CREDITS_PER_USD

#: A callable returning Unix time in seconds; injected everywhere time matters.
Clock = Callable[[], float]
system_clock: Clock = time.time

#: A lowercase ``0x`` + 64 hex transaction hash: the one stored, claimed and compared form.
TxHash = NewType("TxHash", str)

#: An EVM address as accepted on input (any case); the OpenAPI document uses the same pattern.
ADDRESS_PATTERN = r"^0x[0-9a-fA-F]{40}$"
_ADDRESS_RE = re.compile(ADDRESS_PATTERN)
_TX_HASH_RE = re.compile(r"^0x[0-9a-fA-F]{64}$")
_USD_RE = re.compile(r"^-?\d{1,12}(\.\d{1,6})?$")


def is_address(value: str) -> bool:
    """True for ``0x`` + 40 hex digits in any case (checksum is not enforced on input)."""
    return bool(_ADDRESS_RE.match(value))


def canonical_tx_hash(value: str) -> TxHash | None:
    """Return the lowercase canonical form of a 32-byte tx hash, or None if malformed.

    Any hex case is accepted; ``0X`` prefixes, whitespace and other lengths are not.
    """
    if not _TX_HASH_RE.match(value):
        return None
    return TxHash("0x" + bytes.fromhex(value[2:]).hex())


def usd_to_micro(value: str | int | Decimal) -> int:
    """Parse a USD figure (decimal string, at most 6 decimals) into integer micro-USD.

    Raises ValueError for anything else, floats included: money never passes through float.
    """
    if isinstance(value, bool | float):
        raise ValueError("USD amounts must be decimal strings, not floats")
    text = str(value).strip()
    if not _USD_RE.match(text):
        raise ValueError(f"not a USD amount with at most 6 decimals: {value!r}")
    try:
        return int(Decimal(text) * MICRO_USD_PER_USD)
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only valid decimals
        raise ValueError(f"not a USD amount: {value!r}") from exc


def micro_to_usd_number(micro: int) -> float | int:
    """Render micro-USD as a JSON number (the wire's USD format), exact to 6 decimals.

    Only for the wire: the float is built from the exact decimal string and never computed with.
    """
    if micro % MICRO_USD_PER_USD == 0:
        return micro // MICRO_USD_PER_USD
    return float(micro_to_usd_string(micro))


def micro_to_usd_string(micro: int) -> str:
    """Render micro-USD as a plain decimal string with trailing zeros trimmed to 2 places."""
    sign = "-" if micro < 0 else ""
    whole, frac = divmod(abs(micro), MICRO_USD_PER_USD)
    frac_text = f"{frac:06d}".rstrip("0")
    frac_text = frac_text.ljust(2, "0")
    return f"{sign}{whole}.{frac_text}"


def micro_to_credits(micro: int) -> float | int:
    """Credits for display: 1 USD = 100 credits."""
    if micro % MICRO_USD_PER_CREDIT == 0:
        return micro // MICRO_USD_PER_CREDIT
    return float(Decimal(micro) / MICRO_USD_PER_CREDIT)


def micro_usd_to_token_units(micro: int, decimals: int) -> int:
    """Token base units for a micro-USD amount, rounded up (a quote never undercharges).

    Integer arithmetic, exact at any size (Decimal's 28-digit context was not)."""
    scale: int = 10**decimals
    return -(-micro * scale // MICRO_USD_PER_USD)


def token_units_to_micro_usd(units: int, decimals: int) -> int:
    """Micro-USD credited for a received token amount (a 1 USD stablecoin), rounded down.

    Integer arithmetic, exact at any size: a 28-digit Decimal context rounded amounts of
    29+ digits (found by tests/test_properties.py), which could credit more than arrived."""
    scale: int = 10**decimals
    return units * MICRO_USD_PER_USD // scale


def format_token_amount(units: int, decimals: int) -> str:
    """Base units as a decimal string with every decimal place (18000000, 6 -> "18.000000")."""
    if decimals == 0:
        return str(units)
    sign = "-" if units < 0 else ""
    whole, frac = divmod(abs(units), 10**decimals)
    return f"{sign}{whole}.{frac:0{decimals}d}"


class Finality(str, Enum):
    """Which block tag a payment's block must be at or below before it is credited."""

    LATEST = "latest"
    SAFE = "safe"
    FINALIZED = "finalized"


class ContractSignature(str, Enum):
    """What an EIP-1271 check found: the wallet has no code, or its answer."""

    VALID = "valid"
    INVALID = "invalid"
    NO_CODE = "no_code"


@dataclass(frozen=True, slots=True)
class Wallet:
    """An authenticated wallet: its EIP-55 checksummed address."""

    address: str

    @property
    def lower(self) -> str:
        return self.address.lower()


def checksum_address(address: str) -> str:
    """EIP-55 form of a hex address (any case in, checksummed out)."""
    from eth_utils.address import to_checksum_address

    return str(to_checksum_address(address))
