"""EIP-3009 authorizations (pure): the message a payer signs, its EIP-712 digest, the checks
made before anything moves, and the settlement call data (docs/PAYMENTS.md section 7).

No I/O here: the chain-dependent checks (a contract payer's EIP-1271 answer, the payer's funds,
whether the nonce is spent) are made by ``gateway.payments.settle`` through ``gateway.chains``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.abi import function_signature_to_4byte_selector
from eth_utils.crypto import keccak

from gateway.config import TokenConfig
from gateway.types import checksum_address

_SECP256K1_HALF_ORDER = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0

TRANSFER_WITH_AUTHORIZATION_FIELDS: list[dict[str, str]] = [
    {"name": "from", "type": "address"},
    {"name": "to", "type": "address"},
    {"name": "value", "type": "uint256"},
    {"name": "validAfter", "type": "uint256"},
    {"name": "validBefore", "type": "uint256"},
    {"name": "nonce", "type": "bytes32"},
]
_ARGS = "address,address,uint256,uint256,uint256,bytes32"
_TYPES = ["address", "address", "uint256", "uint256", "uint256", "bytes32"]
_WITH_VRS = function_signature_to_4byte_selector(
    f"transferWithAuthorization({_ARGS},uint8,bytes32,bytes32)"
)
_WITH_BYTES = function_signature_to_4byte_selector(f"transferWithAuthorization({_ARGS},bytes)")


class Refusal(enum.StrEnum):
    """Why an authorization is refused before anything is sent (the 402's ``reason``)."""

    TOKEN_NOT_GASLESS = "token_not_gasless"
    WRONG_RECIPIENT = "wrong_recipient"
    UNDERPAID = "underpaid"
    NOT_YET_VALID = "not_yet_valid"
    EXPIRED = "expired"
    BAD_SIGNATURE = "bad_signature"
    PAYER_MISMATCH = "payer_mismatch"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    SIMULATION_FAILED = "simulation_failed"
    AUTHORIZATION_USED = "authorization_used"
    SETTLEMENT_REVERTED = "settlement_reverted"


@dataclass(frozen=True, slots=True)
class Authorization:
    """A signed ``TransferWithAuthorization``: ``payer`` (the message's ``from``) allows anyone
    holding this to move ``value`` base units to ``to`` once, between ``valid_after`` and
    ``valid_before`` (Unix seconds, both exclusive on-chain). ``signature`` is 65 bytes r‖s‖v
    for an account key, or whatever a contract wallet's EIP-1271 check accepts."""

    payer: str  # EIP-55
    to: str  # EIP-55
    value: int
    valid_after: int
    valid_before: int
    nonce: bytes  # 32 bytes
    signature: bytes

    def message(self) -> dict[str, Any]:
        return {
            "from": self.payer,
            "to": self.to,
            "value": self.value,
            "validAfter": self.valid_after,
            "validBefore": self.valid_before,
            "nonce": self.nonce,
        }


def typed_data(authorization: Authorization, chain_id: int, token: TokenConfig) -> dict[str, Any]:
    """The full EIP-712 document, with the token's own domain (name, version, chain, address)."""
    if not token.gasless:
        raise ValueError(f"token {token.key} has no EIP-712 domain configured")
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "TransferWithAuthorization": TRANSFER_WITH_AUTHORIZATION_FIELDS,
        },
        "primaryType": "TransferWithAuthorization",
        "domain": {
            "name": token.eip712_name,
            "version": token.eip712_version,
            "chainId": chain_id,
            "verifyingContract": token.address,
        },
        "message": authorization.message(),
    }


def digest(authorization: Authorization, chain_id: int, token: TokenConfig) -> bytes:
    """``keccak256(0x1901 ‖ domainSeparator ‖ structHash)``: what the token checks the
    signature against."""
    signable = encode_typed_data(full_message=typed_data(authorization, chain_id, token))
    return keccak(b"\x19" + signable.version + signable.header + signable.body)


def recover_signer(authorization: Authorization, message_digest: bytes) -> str | None:
    """The account key that signed ``message_digest``, checked as the token checks it (65
    bytes, low s, v 27/28); None for anything else (a contract wallet's signature included)."""
    signature = authorization.signature
    if len(signature) != 65:
        return None
    s = int.from_bytes(signature[32:64], "big")
    if signature[64] not in (27, 28) or s > _SECP256K1_HALF_ORDER or s == 0:
        return None
    try:
        recovered: str = Account._recover_hash(message_digest, signature=signature)
    except Exception:  # eth-keys raises several types for unrecoverable points
        return None
    return checksum_address(recovered)


def check_terms(
    authorization: Authorization,
    *,
    pay_to: str,
    min_units: int,
    now: int,
    margin_seconds: int,
) -> Refusal | None:
    """The checks that need no chain: recipient, amount, validity window (``validBefore`` must
    leave ``margin_seconds`` to settle). None when all pass."""
    if authorization.to.lower() != pay_to.lower():
        return Refusal.WRONG_RECIPIENT
    if authorization.value < min_units:
        return Refusal.UNDERPAID
    if authorization.valid_after >= now:
        return Refusal.NOT_YET_VALID
    if authorization.valid_before <= now + margin_seconds:
        return Refusal.EXPIRED
    return None


def transfer_calldata(authorization: Authorization) -> bytes:
    """``transferWithAuthorization`` call data: the v,r,s form for a 65-byte signature, the
    bytes-signature form (EIP-1271 wallets, FiatToken v2.2) otherwise."""
    a = authorization
    head = [a.payer, a.to, a.value, a.valid_after, a.valid_before, a.nonce]
    if len(a.signature) == 65:
        sig = a.signature
        return _WITH_VRS + encode(
            [*_TYPES, "uint8", "bytes32", "bytes32"], [*head, sig[64], sig[:32], sig[32:64]]
        )
    return _WITH_BYTES + encode([*_TYPES, "bytes"], [*head, a.signature])
