"""Checking the gateway's signed receipt (``Gateway-Receipt``) of a paid answer: an EIP-712
``PaymentReceipt`` whose signer must be the address the gateway publishes at
``GET /agent/receipts``, for this wallet and, when known, this payment's tx."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data

GATEWAY_RECEIPT = "gateway-receipt"


class ReceiptInvalid(ValueError):
    """The receipt is malformed, not signed by the published key, or not about this payment."""


def verify_receipt(
    header: str, published: dict[str, Any], *, payer: str, tx: str | None
) -> dict[str, Any]:
    """The receipt in ``header`` once its signature recovers to ``published["address"]`` and it
    names ``payer`` (and ``tx`` when given); ``ReceiptInvalid`` otherwise."""
    try:
        document = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
        receipt = dict(document["receipt"])
        signature = bytes.fromhex(str(document["signature"]).removeprefix("0x"))
        message = {**receipt, "tx": bytes.fromhex(str(receipt["tx"]).removeprefix("0x"))}
        signable = encode_typed_data(
            domain_data=published["domain"],
            message_types=published["types"],
            message_data=message,
        )
        signer = Account.recover_message(signable, signature=signature)
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise ReceiptInvalid(f"malformed receipt: {exc}") from None
    expected = published.get("address")
    if not isinstance(expected, str) or signer.lower() != expected.lower():
        raise ReceiptInvalid(f"receipt signed by {signer}, not the gateway's key {expected}")
    if str(receipt.get("payer", "")).lower() != payer.lower():
        raise ReceiptInvalid(f"receipt for {receipt.get('payer')}, not {payer}")
    if tx and str(receipt.get("tx", "")).lower() != tx.lower():
        raise ReceiptInvalid(f"receipt for tx {receipt.get('tx')}, not {tx}")
    return receipt
