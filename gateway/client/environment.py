"""The agent's settings from its environment, shared by the CLI and the MCP server.

    GATEWAY_URL               the gateway (default http://127.0.0.1:8402)
    AGENT_PRIVATE_KEY         the wallet that signs requests and pays (0x + 64 hex)
    AGENT_RPC_URL_<CHAIN>     RPC URL to pay on that chain; AGENT_RPC_URL for any other
    AGENT_MAX_USD             spend cap of one command or tool call, in USD (default 5)
    AGENT_MAX_USD_SESSION     spend cap of one MCP server session, in USD (default 20)
    AGENT_STATE_DIR           the paid-tx journal's folder (default ~/.cache/agent-deploy-gateway)
    AGENT_UNREACHABLE_SECONDS how long to retry a gateway that does not answer (default 30)

The private key is a secret: no message here (nor ``repr`` of the settings) shows it or any part
of it, whatever is wrong with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from gateway.client.agent import AgentClient, ProgressCallback
from gateway.client.journal import FileJournal
from gateway.client.models import Progress

DEFAULT_GATEWAY_URL = "http://127.0.0.1:8402"
DEFAULT_MAX_USD = Decimal(5)
DEFAULT_SESSION_MAX_USD = Decimal(20)
DEFAULT_UNREACHABLE_SECONDS = 30.0
CHAINS = ("arbitrum", "base")


def _silent(progress: Progress) -> None:
    """No progress display."""


class AgentEnvironmentError(ValueError):
    """A missing or malformed variable; the message names the variable, never a secret."""


@dataclass(frozen=True)
class AgentEnvironment:
    gateway_url: str
    account: LocalAccount = field(repr=False)
    rpc_urls: dict[str, str]
    max_usd: Decimal
    session_max_usd: Decimal
    state_dir: Path
    unreachable_seconds: float

    @property
    def private_key_hex(self) -> str:
        """The key as 64 hex digits, for scrubbing it out of anything shown (never shown)."""
        return bytes(self.account.key).hex()

    def client(
        self,
        *,
        max_usd: Decimal | None = None,
        on_progress: ProgressCallback = _silent,
        pay_with: str = "auto",
    ) -> AgentClient:
        """An ``AgentClient`` for this wallet and gateway, journalling paid txs in the state
        folder (so a CLI run and an MCP call of the same deploy share what was paid)."""
        return AgentClient(
            self.gateway_url,
            self.account,
            rpc_urls=self.rpc_urls,
            max_usd=self.max_usd if max_usd is None else max_usd,
            journal=FileJournal(self.state_dir / "payments.json"),
            on_progress=on_progress,
            unreachable_seconds=self.unreachable_seconds,
            pay_with=pay_with,
        )


def _usd(environ: Mapping[str, str], name: str, default: Decimal) -> Decimal:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise AgentEnvironmentError(f"{name} is not an amount in USD") from None
    if not value.is_finite() or value < 0:
        raise AgentEnvironmentError(f"{name} is not an amount in USD")
    return value


def read_agent_environment(environ: Mapping[str, str]) -> AgentEnvironment:
    """The settings, or ``AgentEnvironmentError`` naming the first bad variable."""
    key = environ.get("AGENT_PRIVATE_KEY", "").strip()
    if not key:
        raise AgentEnvironmentError(
            "AGENT_PRIVATE_KEY is not set (the wallet's private key, 0x + 64 hex)"
        )
    try:
        account: LocalAccount = Account.from_key(key)
    except Exception:  # whatever the library says about it may quote the key
        raise AgentEnvironmentError(
            "AGENT_PRIVATE_KEY is not a valid private key (0x + 64 hex digits expected)"
        ) from None
    rpc_urls = {
        name.removeprefix("AGENT_RPC_URL_").lower(): url
        for name, url in environ.items()
        if name.startswith("AGENT_RPC_URL_") and url
    }
    fallback = environ.get("AGENT_RPC_URL", "")
    if fallback:
        for chain in CHAINS:
            rpc_urls.setdefault(chain, fallback)
    raw_wait = environ.get("AGENT_UNREACHABLE_SECONDS", "").strip()
    try:
        unreachable = float(raw_wait) if raw_wait else DEFAULT_UNREACHABLE_SECONDS
    except ValueError:
        raise AgentEnvironmentError("AGENT_UNREACHABLE_SECONDS is not a number") from None
    state_dir = environ.get("AGENT_STATE_DIR") or Path.home() / ".cache" / "agent-deploy-gateway"
    return AgentEnvironment(
        gateway_url=environ.get("GATEWAY_URL") or DEFAULT_GATEWAY_URL,
        account=account,
        rpc_urls=rpc_urls,
        max_usd=_usd(environ, "AGENT_MAX_USD", DEFAULT_MAX_USD),
        session_max_usd=_usd(environ, "AGENT_MAX_USD_SESSION", DEFAULT_SESSION_MAX_USD),
        state_dir=Path(state_dir),
        unreachable_seconds=unreachable,
    )
