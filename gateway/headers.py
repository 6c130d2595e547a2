"""Every HTTP header name the gateway reads or writes, in one place (docs/PROTOCOL.md).

Names are in their canonical case; Starlette's and httpx's header lookups ignore case, and the
ASGI middleware compares raw (lowercase) names through ``raw``.
"""

from __future__ import annotations

# Wallet-signature authentication (docs/PROTOCOL.md section 2).
WALLET_ADDRESS = "X-Wallet-Address"
SIGNATURE = "X-Signature"
TIMESTAMP = "X-Timestamp"
NONCE = "X-Nonce"

# A pushed payment and the credits opt-in (docs/PROTOCOL.md section 4).
PAYMENT_TX = "X-Payment-Tx"
PAYMENT_CHAIN = "X-Payment-Chain"
PAYMENT_TOKEN = "X-Payment-Token"
USE_EXISTING_CREDITS = "X-Use-Existing-Credits"
IDEMPOTENCY_KEY = "Idempotency-Key"

# The standard payment dialects (docs/PAYMENTS.md section 6): MPP rides on Authorization /
# WWW-Authenticate; x402 v2 has its own three.
PAYMENT_REQUIRED = "PAYMENT-REQUIRED"
PAYMENT_SIGNATURE = "PAYMENT-SIGNATURE"
PAYMENT_RESPONSE = "PAYMENT-RESPONSE"
PAYMENT_RECEIPT = "Payment-Receipt"
MPP_SCHEME = "Payment"
# Our own EIP-712 receipt, on every paid answer (docs/PAYMENTS.md section 10).
GATEWAY_RECEIPT = "Gateway-Receipt"
IDEMPOTENT_REPLAYED = "Idempotent-Replayed"  # on an answer replayed for a repeated key

# Request plumbing.
REQUEST_ID = "X-Request-Id"
FORWARDED_FOR = "X-Forwarded-For"
AUTHORIZATION = "Authorization"
WWW_AUTHENTICATE = "WWW-Authenticate"
RETRY_AFTER = "Retry-After"
CACHE_CONTROL = "Cache-Control"
CONTENT_TYPE = "Content-Type"
CONTENT_LENGTH = "Content-Length"
ACCEPT = "Accept"
USER_AGENT = "User-Agent"

# Outbound to CreateOS (docs/UPSTREAM.md section 1).
CREATEOS_API_KEY = "X-Api-Key"


def raw_header(name: str) -> bytes:
    """``name`` as an ASGI raw header name (lowercase bytes)."""
    return name.lower().encode("latin-1")
