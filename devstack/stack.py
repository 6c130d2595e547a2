"""``python -m gateway dev``: the whole system on one machine, and ``--demo``, one agent deploy.

Started in order, stopped in reverse (Ctrl-C or SIGTERM): an embedded Redis in a temporary
folder (every run starts empty, like the chains), two anvil chains (42161 Arbitrum, 8453 Base)
with the test token at the canonical USDC/USDT addresses, the CreateOS simulator on the real
clock (a deployment goes queue -> building -> deploying -> deployed in about 4 s), and the
gateway (uvicorn) from ``config/local.toml`` pointed at them, with a settler (anvil account #7,
funded with anvil's test ETH) that settles gasless USDC payments. The demo wallet (anvil account
#1) gets 1,000 test USDC and USDT on both chains and **no ETH**: it pays its deploy gasless.

The agent's state starts empty too: each run gets its own ``AGENT_STATE_DIR`` (in the run's
temporary folder, printed in the exports and used by ``--demo``), so a journal of paid txs from
an earlier run's chains never reaches this run's gateway. A user who sets ``AGENT_STATE_DIR``
keeps it: that folder is exported and used instead, and left in place.

Default ports: gateway 8402, anvil 8545/8546, simulator 8410 (``--any-ports``: free ones).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shlex
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import FrameType
from typing import TextIO

from eth_account import Account
from eth_account.signers.local import LocalAccount

from devstack.anvil import (
    ANVIL_ACCOUNTS,
    CANONICAL_TOKENS,
    AnvilNode,
    AnvilNotFound,
    AnvilStartError,
    find_anvil_binary,
)
from devstack.server_thread import ServerThread
from devstack.simulator.server import CreateOSSimulator, SimulatorConfig
from gateway.app import create_app
from gateway.client.agent import AgentClient
from gateway.client.bundle import collect
from gateway.client.cli import format_progress, quiet_client_libraries
from gateway.client.errors import ClientError
from gateway.client.journal import FileJournal
from gateway.client.models import Progress
from gateway.config import PROJECT_ROOT, load_settings
from gateway.store.embedded import EmbeddedRedis, EmbeddedRedisError

LOCAL_CONFIG = PROJECT_ROOT / "config" / "local.toml"
CHAINS = {"arbitrum": (42161, 8545), "base": (8453, 8546)}
SIMULATOR_PORT = 8410
SIMULATOR_KEY = "sim-test-key"  # config/local.toml's upstream.api_key
DEMO_ACCOUNT = ANVIL_ACCOUNTS[1]  # public anvil key: local chains only
SETTLER_ACCOUNT = ANVIL_ACCOUNTS[7]  # pays the gas of gasless payments (anvil's test ETH)
RECEIPT_ACCOUNT = ANVIL_ACCOUNTS[6]  # signs every paid answer's receipt
DEMO_FUNDS = 1_000 * 10**6  # 1,000 test tokens (6 decimals) of each kind on each chain
INSTALL_HINT = (
    "anvil is not installed. Install it with `npm ci` in the project root "
    "(or run `bash scripts/setup.sh`, which also does it), or set ANVIL_BIN to an anvil binary."
)

DEMO_FILES = {
    "package.json": '{"name": "demo-app", "scripts": {"start": "node index.js"}}\n',
    "index.js": (
        "require('http').createServer((q, s) => s.end('hello from the demo')).listen(3000)\n"
    ),
    ".env": "DEMO_SECRET=never-uploaded\n",  # left out by the client's bundle rules
}


class StackError(RuntimeError):
    """A part of the stack could not start (message says which and why)."""


@dataclass
class DevStack:
    """The running parts; ``start`` brings them up, ``stop`` takes them down in reverse."""

    anvil_binary: str | None = None  # None: find_anvil_binary()
    any_ports: bool = False
    gateway_port: int = 8402
    out: TextIO = sys.stdout
    nodes: dict[str, AnvilNode] = field(default_factory=dict)
    simulator: CreateOSSimulator | None = None
    gateway_url: str = ""
    simulator_url: str = ""
    redis_url: str = ""
    workdir: Path | None = None
    agent_state_dir: Path | None = None  # None: a fresh one in ``workdir`` for this run
    _exit: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    @property
    def rpc_urls(self) -> dict[str, str]:
        return {name: node.url for name, node in self.nodes.items()}

    @property
    def demo_account(self) -> LocalAccount:
        account: LocalAccount = Account.from_key(DEMO_ACCOUNT[1])
        return account

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        binary = self.anvil_binary or find_anvil_binary()
        self.workdir = Path(tempfile.mkdtemp(prefix="gateway-dev-"))
        workdir = self.workdir
        self._exit.callback(shutil.rmtree, workdir, ignore_errors=True)
        if self.agent_state_dir is None:
            self.agent_state_dir = workdir / "agent"
        self.agent_state_dir.mkdir(parents=True, exist_ok=True)

        redis = EmbeddedRedis(workdir / "redis").start()
        self._exit.callback(redis.stop)
        self.redis_url = redis.url
        self._say(f"redis      {redis.url}")

        for name, (chain_id, port) in CHAINS.items():
            node = AnvilNode.start(
                chain_id,
                log_dir=workdir / "anvil",
                port=None if self.any_ports else port,
                binary=binary,
            )
            self._exit.callback(node.stop)
            self.nodes[name] = node
            for token in node.install_test_tokens().values():
                node.mint(token, DEMO_ACCOUNT[0], DEMO_FUNDS)
            node.set_balance(DEMO_ACCOUNT[0], 0)  # no gas: the demo pays gasless
            self._say(f"anvil      {node.url}  ({name}, chain id {chain_id})")

        self.simulator = CreateOSSimulator(SimulatorConfig(api_keys=(SIMULATOR_KEY,)))
        simulator_server = ServerThread(
            self.simulator.app, port=0 if self.any_ports else SIMULATOR_PORT
        )
        simulator_server.start()
        self._exit.callback(simulator_server.stop)
        self.simulator_url = simulator_server.url
        self._say(f"createos   {self.simulator_url}  (simulator)")

        environ = {"REDIS_URL": redis.url, "CREATEOS_API_URL": self.simulator_url}
        for name, node in self.nodes.items():
            environ[f"GATEWAY_RPC_{name.upper()}"] = node.url
        environ["GATEWAY_SETTLER_KEY"] = SETTLER_ACCOUNT[1]
        environ["GATEWAY_RECEIPT_KEY"] = RECEIPT_ACCOUNT[1]
        settings = load_settings(LOCAL_CONFIG, environ)
        gateway = ServerThread(
            create_app(settings), port=0 if self.any_ports else self.gateway_port
        )
        gateway.start()
        self._exit.callback(gateway.stop)
        self.gateway_url = gateway.url
        self._say(f"gateway    {self.gateway_url}")

    def stop(self) -> None:
        self._exit.close()

    def exports(self) -> str:
        lines = [
            f"export GATEWAY_URL={self.gateway_url}",
            f"export AGENT_PRIVATE_KEY={DEMO_ACCOUNT[1]}",
            f"export AGENT_STATE_DIR={shlex.quote(str(self.agent_state_dir))}",
        ]
        lines += [f"export AGENT_RPC_URL_{n.upper()}={url}" for n, url in self.rpc_urls.items()]
        return "\n".join(lines)

    def _say(self, text: str) -> None:
        print(text, file=self.out, flush=True)


def summary(stack: DevStack) -> str:
    tokens = "; ".join(
        f"{name}: " + ", ".join(f"{key.upper()} {address}" for key, address in addresses.items())
        for name, (chain_id, _) in CHAINS.items()
        for addresses in [CANONICAL_TOKENS[chain_id]]
    )
    return (
        f"\nlocal stack up. demo wallet {DEMO_ACCOUNT[0]} holds 1000 test USDC and USDT on "
        f"each chain ({tokens}) and no ETH: it pays USDC gasless (the gateway's settler "
        f"{SETTLER_ACCOUNT[0]} pays the gas); a USDT payment is a transfer and needs gas it "
        "does not have.\nThe demo key is anvil's public test key: never use it on a "
        f"real chain.\n\nTo deploy as the demo agent from another shell:\n{stack.exports()}\n"
        "  .venv/bin/python -m gateway deploy ./my-app --name my-app\n"
    )


async def run_demo(stack: DevStack, out: TextIO) -> int:
    """One agent deploy end to end (402, payment, confirmation, build, ready); 0 on success."""
    assert stack.workdir is not None
    app_dir = stack.workdir / "demo-app"
    app_dir.mkdir()
    for name, text in DEMO_FILES.items():
        (app_dir / name).write_text(text, encoding="utf-8")
    bundle = collect(app_dir)

    def say(text: str) -> None:
        print(text, file=out, flush=True)

    say(f"\ndemo: deploying {app_dir} as demo-app from {DEMO_ACCOUNT[0]}")
    say(f"[{'bundle':>12}] {sorted(bundle.files)}; left out secrets: {bundle.skipped_secrets}")

    def progress(step: Progress) -> None:
        say(format_progress(step))

    assert stack.agent_state_dir is not None
    async with AgentClient(
        stack.gateway_url,
        stack.demo_account,
        rpc_urls=stack.rpc_urls,
        max_usd=Decimal(5),
        journal=FileJournal(stack.agent_state_dir / "payments.json"),
        on_progress=progress,
        poll_seconds=0.5,
    ) as client:
        try:
            deployment = await client.deploy(bundle.upload(), name="demo-app")
            credits = await client.credits()
        except ClientError as exc:
            say(f"demo failed: {type(exc).__name__}: {exc}")
            return 1
    say(f"demo: ready at {deployment.url}")
    payment = deployment.started.payment
    how = "gasless, settled by the gateway in" if payment and payment.credential else "tx"
    balance = int(stack.nodes["arbitrum"].rpc("eth_getBalance", [DEMO_ACCOUNT[0], "latest"]), 16)
    say(
        f"demo: paid {how} {payment.tx_hash if payment else '-'}; the wallet's ETH: {balance}"
        f"; credits {credits.balance_usd} USD, {credits.active_projects} active project(s)"
    )
    return 0


@contextlib.contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    """SIGTERM behaves like Ctrl-C (KeyboardInterrupt), so the stack stops the same way."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """``python -m gateway dev [--demo] [--any-ports] [--port]``; exit code 0 on success."""
    out = sys.stdout
    quiet_client_libraries()
    try:
        binary = find_anvil_binary(environ=environ)
    except AnvilNotFound as exc:
        print(f"error: {INSTALL_HINT}\n({exc})", file=sys.stderr)
        return 1
    user_state_dir = environ.get("AGENT_STATE_DIR", "").strip()
    stack = DevStack(
        binary,
        any_ports=args.any_ports,
        gateway_port=args.port,
        out=out,
        agent_state_dir=Path(user_state_dir).expanduser() if user_state_dir else None,
    )
    with _stop_on_sigterm():
        try:
            stack.start()
            print(summary(stack), file=out, flush=True)
            if args.demo:
                return asyncio.run(run_demo(stack, out))
            print("Ctrl-C stops everything.", file=out, flush=True)
            threading.Event().wait()
        except KeyboardInterrupt:
            print("\nstopping", file=out, flush=True)
        except (AnvilStartError, EmbeddedRedisError, OSError, RuntimeError) as exc:
            print(f"error: the local stack did not start: {exc}", file=sys.stderr)
            return 1
        finally:
            stack.stop()
    return 0


def add_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], environ: Mapping[str, str]
) -> None:
    dev = sub.add_parser(
        "dev",
        help="run the whole system locally (anvil chains, Redis, CreateOS simulator, gateway)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    dev.add_argument("--demo", action="store_true", help="run one paid agent deploy, then exit")
    dev.add_argument("--any-ports", action="store_true", help="use free ports for everything")
    dev.add_argument("--port", type=int, default=8402, help="the gateway's port (default 8402)")
    dev.set_defaults(run=lambda args: run(args, environ))
