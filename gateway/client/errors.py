"""The agent client's one error tree. The client raises nothing else: httpx, web3 and JSON
errors are mapped to these at the boundary.

    ClientError
    ├── GatewayUnreachable      no answer from the gateway (after retries)
    ├── GatewayRefused          the gateway answered an error (``status``, ``message``, ``code``)
    │   ├── NameTaken           409: the project name belongs to someone else
    │   └── UpstreamFailed      502: CreateOS failed, still failing after retries on credits
    ├── PaymentError            nothing more is paid automatically after one of these
    │   ├── SpendCapExceeded    paying the quote would take the command above its cap
    │   ├── CreditsCoverQuote   the credits cover it, other live projects share them: not paid
    │   ├── AskedToPayAgain     a 402 after this deploy's payment that is not its shortfall
    │   ├── InsufficientFunds   the wallet holds less of the token than the quote
    │   ├── NoRpcForChain       no RPC URL for the quoted chain, or it serves another chain
    │   ├── TransferFailed      the transfer could not be sent or reverted on-chain
    │   ├── PaymentRejected     402 "Payment verification failed" (``reason``)
    │   └── PaymentNotConfirmed still pending after the confirmation timeout (``tx`` kept)
    ├── BuildFailed             the deployment ended ``failed`` (``status`` holds the reason)
    └── DeployTimedOut          the deployment was still deploying at the status timeout
"""

from __future__ import annotations

from decimal import Decimal
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
    """Paying ``asked_usd`` would take what this command paid (``paid_usd``) above the spend
    cap (``cap_usd``, the total for one command); nothing more was paid. ``asking`` names who
    asks (the gateway's quote, or the caller's own top-up)."""

    def __init__(
        self,
        asked_usd: Decimal,
        cap_usd: Decimal,
        paid_usd: Decimal = Decimal(0),
        *,
        asking: str = "the gateway asks",
    ) -> None:
        if paid_usd:
            text = (
                f"{asking} {asked_usd} USD more after this command paid {paid_usd} USD: "
                f"{paid_usd + asked_usd} USD in all, above the spend cap of {cap_usd} USD; "
                "nothing more was paid"
            )
        else:
            text = (
                f"{asking} {asked_usd} USD, above the spend cap of {cap_usd} USD; nothing was paid"
            )
        super().__init__(text)
        self.asked_usd = asked_usd
        self.cap_usd = cap_usd
        self.paid_usd = paid_usd


class CreditsCoverQuote(PaymentError):
    """A 402 with the sharing ``warning``: the wallet's credits (``balance_usd``) already cover
    the deploy (``amount_usd``), but ``active_projects`` other live projects draw on them, and
    the caller did not opt in. Paying would only add credits the deploy does not need, so
    nothing was paid; opting in (``use_existing_credits=True``, the CLI's ``--use-credits``)
    deploys on the credits."""

    def __init__(
        self,
        amount_usd: Decimal,
        balance_usd: Decimal,
        active_projects: int,
        *,
        paid_usd: Decimal = Decimal(0),
    ) -> None:
        plural = "project draws" if active_projects == 1 else "projects draw"
        paid = f"this command paid {paid_usd} USD and " if paid_usd else ""
        nothing = "nothing more was paid" if paid_usd else "nothing was paid"
        self.summary = (
            f"{paid}the wallet's credits ({balance_usd} USD) cover this deploy "
            f"({amount_usd} USD), but {active_projects} other live {plural} on them and would "
            f"run shorter; {nothing}"
        )
        super().__init__(
            f"{self.summary}. To deploy on the credits anyway, opt in with "
            "use_existing_credits=True"
        )
        self.amount_usd = amount_usd
        self.balance_usd = balance_usd
        self.active_projects = active_projects
        self.paid_usd = paid_usd


class AskedToPayAgain(PaymentError):
    """The gateway answered this deploy's payment (``tx``) with another 402 that is not the
    shortfall of a credited payment (or a shortfall was paid already); nothing more was paid.
    The payment stays credited to the wallet: retrying on those credits costs nothing."""

    def __init__(self, message: str, tx: str) -> None:
        super().__init__(message)
        self.tx = tx


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
