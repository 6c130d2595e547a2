"""Wallet authentication (docs/PROTOCOL.md section 2): EIP-191 over
``{wallet}:{timestamp}:{nonce}``.

Rules, checked in this order; each failure is an ``AuthFailed`` (401) naming the rule:
1. all four headers present and well formed;
2. the timestamp within ``window_seconds`` of the server clock;
3. the signature recovers to the wallet, or the wallet is a contract on the default chain
   whose EIP-1271 ``isValidSignature`` answers the magic value;
4. the nonce unused for this wallet: consumed with ``SET NX EX`` only after the signature
   checks out, so a stranger cannot burn someone else's nonces.

Every request is counted against the rate limit exactly once, failed ones included. On the
common path (an EOA signature that recovers) the count and the nonce are one Lua script, so
authentication costs one Redis round trip; a request that fails is counted before its 401.

Failed authentications cost the caller, not the gateway (docs/PROTOCOL.md section 5): each also
draws on its client IP's failure budget, whatever wallet it claims (``RateLimiter.count_failure``),
and once that is spent the IP's failing requests get 429. A signature that does not recover to
the wallet is charged to that budget *before* its EIP-1271 RPC call and refunded if the
contract accepts it, so a flood of junk signatures with rotating wallets spends at most the
budget in RPC calls. An address found to have no code is remembered for
``no_code_ttl_seconds`` (a fact about the chain, never a signature result), so repeating a bad
signature for it costs no RPC call at all. An EOA whose signature recovers never touches the
failure budget: honest agents behind the attacker's NAT keep their own 30 a minute.

Replays are keyed on ``(wallet, nonce)``, never on signature bytes (ECDSA signatures are
malleable: the high-s twin recovers to the same address).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from coincurve import PublicKey
from eth_hash.auto import keccak

from gateway.access.ratelimit import RateLimiter
from gateway.errors import AuthFailed
from gateway.headers import NONCE, SIGNATURE, TIMESTAMP, WALLET_ADDRESS
from gateway.store import Store
from gateway.types import (
    Clock,
    ContractSignature,
    Wallet,
    checksum_address,
    is_address,
    system_clock,
)

# 65 bytes for an EOA; a contract wallet's EIP-1271 signature may be longer.
_SIGNATURE_RE = re.compile(r"^0x(?:[0-9a-fA-F]{2}){65,2048}$")
_TIMESTAMP_RE = re.compile(r"^[0-9]{1,16}$")
_NONCE_RE = re.compile(r"^[A-Za-z0-9_-]{8,128}$")
_ERC6492_SUFFIX = "6492" * 16


class ContractSignatureChecker(Protocol):
    """EIP-1271 check on the default chain (``ChainClient`` satisfies it)."""

    @property
    def chain_id(self) -> int: ...

    async def check_contract_signature(
        self, wallet: str, message: str, signature: bytes
    ) -> ContractSignature: ...


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """The four auth headers, parsed. ``message`` is built from the raw header values."""

    wallet: str
    signature: bytes
    timestamp_ms: int
    nonce: str

    @property
    def message(self) -> str:
        return f"{self.wallet}:{self.timestamp_ms}:{self.nonce}"


def signing_message(wallet: str, timestamp_ms: int | str, nonce: str) -> str:
    """The exact text an agent signs with ``personal_sign``."""
    return f"{wallet}:{timestamp_ms}:{nonce}"


def parse_auth_headers(headers: Mapping[str, str]) -> tuple[SignedRequest, str]:
    """Rule 1. Returns the parsed headers and the raw message text (raw header values).

    ``headers``: Starlette's case-insensitive headers, or any mapping with lowercase names.
    """
    values = {}
    for name in (WALLET_ADDRESS, SIGNATURE, TIMESTAMP, NONCE):
        value = headers.get(name.lower())
        if value is None or value == "":
            raise AuthFailed(f"Missing {name} header", code="missing_header")
        values[name] = value
    wallet, signature = values[WALLET_ADDRESS], values[SIGNATURE]
    timestamp, nonce = values[TIMESTAMP], values[NONCE]
    if not is_address(wallet):
        raise AuthFailed(
            "X-Wallet-Address must be 0x followed by 40 hex digits", code="malformed_header"
        )
    if not _SIGNATURE_RE.match(signature):
        raise AuthFailed(
            "X-Signature must be 0x-prefixed hex of a 65-byte signature", code="malformed_header"
        )
    if not _TIMESTAMP_RE.match(timestamp):
        raise AuthFailed(
            "X-Timestamp must be Unix time in milliseconds (decimal digits)",
            code="malformed_header",
        )
    if not _NONCE_RE.match(nonce):
        raise AuthFailed(
            "X-Nonce must be 8-128 characters of A-Z, a-z, 0-9, '_' and '-'",
            code="malformed_header",
        )
    parsed = SignedRequest(
        wallet=wallet,
        signature=bytes.fromhex(signature[2:]),
        timestamp_ms=int(timestamp),
        nonce=nonce,
    )
    return parsed, f"{wallet}:{timestamp}:{nonce}"


_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def eip191_hash(message: str) -> bytes:
    """``keccak256("\\x19Ethereum Signed Message:\\n" + len(message) + message)``."""
    data = message.encode("utf-8")
    return bytes(keccak(b"\x19Ethereum Signed Message:\n" + str(len(data)).encode() + data))


def recover_signer(message: str, signature: bytes) -> str | None:
    """The lowercase address that signed ``message`` (EIP-191), or None if unrecoverable.

    Straight to libsecp256k1 through coincurve (what eth-account does underneath, minus its
    checksum round trips). ``v`` may be 27/28 or 0/1; high-s twins recover like eth-account's.
    """
    if len(signature) != 65:
        return None
    v = signature[64]
    if v >= 27:
        v -= 27
    r = int.from_bytes(signature[0:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    if v not in (0, 1) or not (0 < r < _SECP256K1_N and 0 < s < _SECP256K1_N):
        return None
    try:
        public = PublicKey.from_signature_and_message(
            signature[:64] + bytes([v]), eip191_hash(message), hasher=None
        )
    except (ValueError, TypeError):
        return None
    return "0x" + keccak(public.format(compressed=False)[1:])[-20:].hex()


@functools.lru_cache(maxsize=65536)
def _checksummed(address_lower: str) -> str:
    return checksum_address(address_lower)


class WalletAuthenticator:
    """Checks the four rules and returns the authenticated wallet."""

    def __init__(
        self,
        store: Store,
        contract_wallets: ContractSignatureChecker | None,
        limiter: RateLimiter,
        *,
        window_seconds: int = 60,
        nonce_ttl_seconds: int = 300,
        no_code_ttl_seconds: int = 60,
        clock: Clock = system_clock,
    ) -> None:
        self._store = store
        self._contract_wallets = contract_wallets
        self._limiter = limiter
        self._window_ms = window_seconds * 1000
        self._window_seconds = window_seconds
        self._nonce_ttl = nonce_ttl_seconds
        self._no_code_ttl = no_code_ttl_seconds
        self._clock = clock

    async def authenticate(
        self, headers: Mapping[str, str], *, client_ip: str, wallet_key: str
    ) -> Wallet:
        """Check the four rules; ``client_ip``/``wallet_key`` name the rate-limit bucket."""
        try:
            signed, message = parse_auth_headers(headers)
            self._check_timestamp(signed)
            wallet_lower = signed.wallet.lower()
            eoa = recover_signer(message, signed.signature) == wallet_lower
        except AuthFailed:
            # 429 wins over 401 when the request bucket or the IP's failure budget is spent.
            await self._limiter.count_failure(client_ip, wallet_key)
            raise

        nonce_key = self._store.keys.nonce(wallet_lower, signed.nonce)
        if eoa:
            fresh = await self._limiter.admit(client_ip, wallet_key, nonce_key, self._nonce_ttl)
        else:
            # Charged as a failure before the RPC call (a flood of bad signatures spends the
            # caller's budget, not the RPC quota); given back once the contract accepts it.
            await self._limiter.count_failure(client_ip, wallet_key)
            await self._check_contract_signature(signed, message)
            await self._limiter.refund_failure(client_ip)
            fresh = await self._store.put_if_absent(nonce_key, "1", ttl_ms=self._nonce_ttl * 1000)
        if not fresh:
            raise AuthFailed("X-Nonce already used for this wallet", code="nonce_reused")
        return Wallet(address=_checksummed(wallet_lower))

    def _check_timestamp(self, signed: SignedRequest) -> None:
        skew = signed.timestamp_ms - int(self._clock() * 1000)
        if skew < -self._window_ms:
            raise AuthFailed(
                f"X-Timestamp expired: more than {self._window_seconds} s in the past",
                code="timestamp_expired",
            )
        if skew > self._window_ms:
            raise AuthFailed(
                f"X-Timestamp is more than {self._window_seconds} s in the future",
                code="timestamp_in_future",
            )

    async def _check_contract_signature(self, signed: SignedRequest, message: str) -> None:
        if signed.signature.hex().endswith(_ERC6492_SUFFIX):
            raise AuthFailed(
                "ERC-6492 signatures (undeployed smart wallets) are not supported; "
                "deploy the wallet or sign with its owner key",
                code="erc6492_unsupported",
            )
        if self._contract_wallets is not None:
            checker = self._contract_wallets
            no_code_key = self._store.keys.no_code(checker.chain_id, signed.wallet)
            if await self._store.get(no_code_key) is None:
                found = await checker.check_contract_signature(
                    signed.wallet, message, signed.signature
                )
                if found is ContractSignature.VALID:
                    return
                if found is ContractSignature.NO_CODE:
                    await self._store.put(no_code_key, "1", ttl_ms=self._no_code_ttl * 1000)
        raise AuthFailed(
            "X-Signature does not match X-Wallet-Address for the message "
            "'{wallet}:{timestamp}:{nonce}'",
            code="bad_signature",
        )
