"""The agent client's one error tree. The client raises nothing else: httpx, web3 and JSON
errors are mapped to these at the boundary.

    ClientError
    ├── GatewayUnreachable      no answer from the gateway (after retries)
    ├── GatewayRefused          the gateway answered an error (``status``, ``message``, ``code``)
    │   ├── NameTaken           409: the project name belongs to someone else
    │   └── UpstreamFailed      502: CreateOS failed, still failing after retries on credits
    ├── PaymentError            nothing more is paid automatically after one of these
    │   ├── SpendCapExceeded    the quote is above the caller's cap: nothing was paid
    │   ├── InsufficientFunds   the wallet holds less of the token than the quote
    │   ├── NoRpcForChain       no RPC URL for the quoted chain, or it serves another chain
    │   ├── TransferFailed      the transfer could not be sent or reverted on-chain
    │   ├── PaymentRejected     402 "Payment verification failed" (``reason``)
    │   └── PaymentNotConfirmed still pending after the confirmation timeout (``tx`` kept)
    ├── BuildFailed             the deployment ended ``failed`` (``status`` holds the reason)
    └── DeployTimedOut          the deployment was still deploying at the status timeout
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.client.models import DeploymentStatus


class ClientError(Exception):
    """Base of every error the agent client raises."""


class GatewayUnreachable(ClientError):
    """The gateway did not answer (connection refused, timeout) after the client's retries."""


class GatewayRefused(ClientError):
    """The gateway answered an error: HTTP ``status``, its public ``message``, the machine
    ``code`` when it sent one, and the other fields of the JSON body in ``fields``."""

    def __init__(self, status: int, message: str, code: str | None, fields: dict[str, Any]) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.code = code
        self.fields = fields


class NameTaken(GatewayRefused):
    """409 ``Project name already taken``: another wallet owns the name; nothing was paid."""


class UpstreamFailed(GatewayRefused):
    """502 from the gateway: CreateOS failed. Any payment is already credited."""


class PaymentError(ClientError):
    """The payment step stopped; the client pays nothing more on its own after this."""


class SpendCapExceeded(PaymentError):
    """The quote is above the spend cap; nothing was paid."""

    def __init__(self, amount_usd: str, cap_usd: str) -> None:
        super().__init__(f"the gateway asks {amount_usd} USD, above the spend cap of {cap_usd} USD")
        self.amount_usd = amount_usd
        self.cap_usd = cap_usd


class InsufficientFunds(PaymentError):
    """The wallet's token balance is below the quote; nothing was sent."""


class NoRpcForChain(PaymentError):
    """No RPC URL for the chain the gateway quoted, or the URL serves another chain id."""


class TransferFailed(PaymentError):
    """Sending the transfer failed, or its receipt has status 0 (``tx`` when one was sent)."""

    def __init__(self, message: str, tx: str | None = None) -> None:
        super().__init__(message)
        self.tx = tx


class PaymentRejected(PaymentError):
    """402 "Payment verification failed": the gateway will not credit ``tx`` (``reason``)."""

    def __init__(self, message: str, tx: str, reason: str | None) -> None:
        super().__init__(message)
        self.tx = tx
        self.reason = reason


class PaymentNotConfirmed(PaymentError):
    """The gateway still reported ``tx`` pending (or not found) at the confirmation timeout.
    The tx is remembered: the next deploy of the same name retries with it, never pays again."""

    def __init__(self, message: str, tx: str) -> None:
        super().__init__(message)
        self.tx = tx


class BuildFailed(ClientError):
    """The deployment ended ``failed``; ``status`` carries the raw state and reason."""

    def __init__(self, status: DeploymentStatus) -> None:
        super().__init__(f"deployment {status.deployment_id} failed: {status.reason}")
        self.status = status


class DeployTimedOut(ClientError):
    """The deployment was still ``deploying`` when the status timeout ran out."""
