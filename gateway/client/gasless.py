"""Paying a quote without gas: an EIP-3009 ``TransferWithAuthorization`` signed locally and sent
as an x402 v2 ``PAYMENT-SIGNATURE``; the gateway settles it and pays the gas.

``gasless_offer`` picks, from a 402's ``PAYMENT-REQUIRED`` header, the offer for the quote's
chain and token (USDC: tokens without EIP-3009 are never offered); ``sign_payment`` signs it
with the offer's own EIP-712 domain (name and version from ``extra``, the chain id, the token
address) and returns the header value. Nothing here talks to a chain: the wallet needs USDC and
no ETH at all.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount

PAYMENT_REQUIRED = "payment-required"
PAYMENT_SIGNATURE = "PAYMENT-SIGNATURE"
PAYMENT_RESPONSE = "payment-response"

_TRANSFER_WITH_AUTHORIZATION = [
    {"name": "from", "type": "address"},
    {"name": "to", "type": "address"},
    {"name": "value", "type": "uint256"},
    {"name": "validAfter", "type": "uint256"},
    {"name": "validBefore", "type": "uint256"},
    {"name": "nonce", "type": "bytes32"},
]


@dataclass(frozen=True, slots=True)
class GaslessOffer:
    """One x402 ``accepts`` entry of a 402, with the ``resource`` it was offered for."""

    resource: dict[str, Any]
    accepted: dict[str, Any]

    @property
    def chain_id(self) -> int:
        return int(str(self.accepted["network"]).removeprefix("eip155:"))

    @property
    def amount(self) -> int:
        return int(self.accepted["amount"])


def gasless_offer(header: str | None, *, chain_id: int, token_address: str) -> GaslessOffer | None:
    """The offer for ``token_address`` on ``chain_id`` in a ``PAYMENT-REQUIRED`` value (None
    when the 402 offers none, or the header is not the x402 v2 shape)."""
    if not header:
        return None
    try:
        document = json.loads(base64.b64decode(header, validate=True))
    except (binascii.Error, ValueError):
        return None
    if not isinstance(document, dict) or document.get("x402Version") != 2:
        return None
    resource = document.get("resource")
    accepts = document.get("accepts")
    if not isinstance(resource, dict) or not isinstance(accepts, list):
        return None
    for accepted in accepts:
        if not isinstance(accepted, dict):
            continue
        extra = accepted.get("extra")
        if (
            accepted.get("scheme") == "exact"
            and accepted.get("network") == f"eip155:{chain_id}"
            and str(accepted.get("asset", "")).lower() == token_address.lower()
            and isinstance(extra, dict)
            and extra.get("assetTransferMethod") == "eip3009"
            and isinstance(extra.get("name"), str)
            and isinstance(extra.get("version"), str)
        ):
            return GaslessOffer(resource, accepted)
    return None


def sign_payment(
    account: LocalAccount, offer: GaslessOffer, *, clock: Callable[[], float] = time.time
) -> str:
    """The ``PAYMENT-SIGNATURE`` value paying ``offer`` from ``account``: valid from now for the
    offer's ``maxTimeoutSeconds``, with a fresh random nonce."""
    accepted = offer.accepted
    now = int(clock())
    nonce = secrets.token_bytes(32)
    message: dict[str, Any] = {
        "from": account.address,
        "to": str(accepted["payTo"]),
        "value": offer.amount,
        "validAfter": 0,
        "validBefore": now + int(accepted.get("maxTimeoutSeconds") or 300),
        "nonce": nonce,
    }
    domain = {
        "name": accepted["extra"]["name"],
        "version": accepted["extra"]["version"],
        "chainId": offer.chain_id,
        "verifyingContract": str(accepted["asset"]),
    }
    signed = account.sign_typed_data(
        domain, {"TransferWithAuthorization": _TRANSFER_WITH_AUTHORIZATION}, message
    )
    payload = {
        "x402Version": 2,
        "resource": offer.resource,
        "accepted": accepted,
        "payload": {
            "authorization": {
                "from": message["from"],
                "to": message["to"],
                "value": str(message["value"]),
                "validAfter": str(message["validAfter"]),
                "validBefore": str(message["validBefore"]),
                "nonce": "0x" + nonce.hex(),
            },
            "signature": "0x" + bytes(signed.signature).hex(),
        },
    }
    return base64.b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode()


def settled_tx(header: str | None) -> str | None:
    """The settlement tx of a ``PAYMENT-RESPONSE`` value, if it says it succeeded."""
    if not header:
        return None
    try:
        document = json.loads(base64.b64decode(header))
    except (binascii.Error, ValueError):
        return None
    if isinstance(document, dict) and document.get("success") is True:
        tx = document.get("transaction")
        return tx if isinstance(tx, str) else None
    return None
