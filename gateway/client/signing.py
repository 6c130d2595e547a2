"""Signing requests the way the gateway checks them (docs/PROTOCOL.md section 2).

The message is ``{address}:{timestamp_ms}:{nonce}`` signed with EIP-191 ``personal_sign``: what
viem's ``signMessage({message})`` and eth-account's ``sign_message(encode_defunct(text=...))``
produce.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount


def auth_headers(
    account: LocalAccount,
    *,
    clock: Callable[[], float] = time.time,
    nonce: str | None = None,
    timestamp_ms: int | None = None,
    address: str | None = None,
) -> dict[str, str]:
    """Fresh ``X-Wallet-Address``/``X-Signature``/``X-Timestamp``/``X-Nonce`` headers.

    ``address`` overrides the header value (any hex case is accepted by the gateway; the
    message is built from exactly this text).
    """
    wallet = address or account.address
    ts = str(timestamp_ms if timestamp_ms is not None else int(clock() * 1000))
    nonce_value = nonce or str(uuid.uuid4())
    message = f"{wallet}:{ts}:{nonce_value}"
    signed = account.sign_message(encode_defunct(text=message))
    return {
        "X-Wallet-Address": wallet,
        "X-Signature": "0x" + bytes(signed.signature).hex(),
        "X-Timestamp": ts,
        "X-Nonce": nonce_value,
    }
