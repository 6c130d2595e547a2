"""Signed payment receipts (docs/PAYMENTS.md section 10), pure: every paid answer (a deploy or a
redeploy that credited a payment, a top-up; any of the three ways to pay) carries an EIP-712
``PaymentReceipt`` signed by the ``GATEWAY_RECEIPT_KEY`` account, whose address
``GET /agent/receipts`` publishes. A receipt states what was credited for which payment, so an
agent holds proof of every credit it paid for; ``gateway.client`` verifies it.

The domain has no chain id: one receipt key covers every chain, and the receipt names its own.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount

DOMAIN: dict[str, Any] = {"name": "Agent Deploy Gateway", "version": "1"}
TYPES: dict[str, list[dict[str, str]]] = {
    "PaymentReceipt": [
        {"name": "chainId", "type": "uint256"},
        {"name": "tx", "type": "bytes32"},
        {"name": "payer", "type": "address"},
        {"name": "creditedMicroUsd", "type": "uint256"},
        {"name": "balanceMicroUsd", "type": "int256"},
        {"name": "requestId", "type": "string"},
        {"name": "issuedAt", "type": "uint256"},
    ]
}


@dataclass(frozen=True, slots=True)
class Credit:
    """What one paid answer credited."""

    chain_id: int
    tx: str
    payer: str
    credited_micro: int
    balance_micro: int
    request_id: str
    issued_at: int


class ReceiptSigner:
    def __init__(self, key: str) -> None:
        self._account: LocalAccount = Account.from_key(key)

    @property
    def address(self) -> str:
        return str(self._account.address)

    def header(self, credit: Credit) -> str:
        """The ``Gateway-Receipt`` value: base64url JSON ``{receipt, signature}``."""
        message = {
            "chainId": credit.chain_id,
            "tx": bytes.fromhex(credit.tx.removeprefix("0x")),
            "payer": credit.payer,
            "creditedMicroUsd": credit.credited_micro,
            "balanceMicroUsd": credit.balance_micro,
            "requestId": credit.request_id,
            "issuedAt": credit.issued_at,
        }
        signed = self._account.sign_typed_data(DOMAIN, TYPES, message)
        document = {
            "receipt": {**message, "tx": credit.tx},
            "signature": "0x" + bytes(signed.signature).hex(),
        }
        encoded = json.dumps(document, separators=(",", ":"), sort_keys=True).encode()
        return base64.urlsafe_b64encode(encoded).rstrip(b"=").decode("ascii")


def published(signer: ReceiptSigner | None) -> dict[str, Any]:
    """The ``GET /agent/receipts`` body: the signing address and the typed-data layout."""
    return {
        "address": None if signer is None else signer.address,
        "domain": DOMAIN,
        "types": TYPES,
        "primaryType": "PaymentReceipt",
        "header": "Gateway-Receipt",
    }
