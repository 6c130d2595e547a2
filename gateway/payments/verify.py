"""Which logs of a receipt count as a payment (docs/PAYMENTS.md section 2, docs/CHAINS.md
section 2), pure: ``count_payment`` sums the token's own ``Transfer`` logs from the payer to
``pay_to`` and, when none count, names the closest miss.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from gateway.chains import Receipt

#: ``keccak("Transfer(address,address,uint256)")``: topic0 of ERC-20 (and ERC-721) transfers.
TRANSFER_TOPIC = bytes.fromhex("ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef")


class FailureReason(str, Enum):
    """The ``reason`` of a 402 "Payment verification failed"."""

    REVERTED = "reverted"  # receipt status 0
    PAYER_MISMATCH = "payer_mismatch"  # right token to pay_to, but from another wallet
    WRONG_RECIPIENT = "wrong_recipient"  # right token from the wallet, but not to pay_to
    WRONG_TOKEN = "wrong_token"  # Transfer events only from other contracts
    NOTHING_TRANSFERRED = "nothing_transferred"  # no Transfer of any kind (or only zero values)
    TOO_OLD = "too_old"  # block older than max_payment_age
    WRONG_CHAIN = "wrong_chain"  # not on the named chain, but on another configured one


@dataclass(frozen=True, slots=True)
class TokenTransfer:
    """An ERC-20 ``Transfer`` log: 3 topics, topic0 = Transfer, 32-byte value. Lowercase hex."""

    contract: str
    sender: str
    recipient: str
    value: int


def _topic_address(topic: bytes) -> str:
    return "0x" + topic[-20:].hex()


def token_transfers(receipt: Receipt) -> list[TokenTransfer]:
    """Every ERC-20-shaped Transfer log of the receipt, from any contract (decoded by hand:
    ERC-721 transfers share topic0 but have 4 topics, look-alikes may carry odd data)."""
    found = []
    for entry in receipt.logs:
        if len(entry.topics) != 3 or entry.topics[0] != TRANSFER_TOPIC or len(entry.data) != 32:
            continue
        found.append(
            TokenTransfer(
                contract=entry.address.lower(),
                sender=_topic_address(entry.topics[1]),
                recipient=_topic_address(entry.topics[2]),
                value=int.from_bytes(entry.data, "big"),
            )
        )
    return found


@dataclass(frozen=True, slots=True)
class PaymentCount:
    """``units`` received (> 0 when it counts as a payment), else the ``reason`` it does not."""

    units: int
    reason: FailureReason | None


def count_payment(receipt: Receipt, *, token_address: str, pay_to: str, payer: str) -> PaymentCount:
    """Sum the token's Transfer logs from ``payer`` to ``pay_to`` (docs/PAYMENTS.md section 2).

    Only logs emitted by ``token_address`` count. When the sum is 0 the reason is the closest
    miss, most specific first: reverted, payer_mismatch, wrong_recipient, wrong_token,
    nothing_transferred.
    """
    if receipt.status != 1:
        return PaymentCount(0, FailureReason.REVERTED)
    token, to, sender = token_address.lower(), pay_to.lower(), payer.lower()
    transfers = token_transfers(receipt)
    of_token = [t for t in transfers if t.contract == token and t.value > 0]
    units = sum(t.value for t in of_token if t.recipient == to and t.sender == sender)
    if units > 0:
        return PaymentCount(units, None)
    if any(t.recipient == to for t in of_token):
        return PaymentCount(0, FailureReason.PAYER_MISMATCH)
    if any(t.sender == sender for t in of_token):
        return PaymentCount(0, FailureReason.WRONG_RECIPIENT)
    other_contracts = any(
        entry.topics and entry.topics[0] == TRANSFER_TOPIC and entry.address.lower() != token
        for entry in receipt.logs
    )
    if other_contracts:
        return PaymentCount(0, FailureReason.WRONG_TOKEN)
    return PaymentCount(0, FailureReason.NOTHING_TRANSFERRED)
