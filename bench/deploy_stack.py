"""A real gateway process in front of a CreateOS simulator process, on loopback, for benchmarks.

    with DeployStack.start() as stack:
        stack.gateway_url, stack.simulator_url, stack.gateway_pid
        asyncio.run(stack.credit(wallet, micro_usd))

- Redis: an embedded redis-server in a temporary directory (never a shared one).
- CreateOS: ``CreateOSSimulator`` under uvicorn in its own process (``simulator_app`` below),
  on the real clock, so deployments finish after a few seconds.
- Gateway: ``python -m gateway serve`` (uvicorn, uvloop, httptools: the production path) with a
  temporary config: config/local.toml with the rate limit raised (benchmarks send more than
  30 requests a minute from one wallet) and the simulator as upstream.
- No chain is needed: wallets get credits through the ledger directly (an operator
  adjustment), and signature checks of EOAs never call an RPC.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from starlette.applications import Starlette

from devstack.simulator.server import CreateOSSimulator, SimulatorConfig
from gateway.config import PROJECT_ROOT
from gateway.ledger import EntryKind, Ledger
from gateway.store import connect_store
from gateway.store.embedded import EmbeddedRedis

SIM_KEY = "sim-test-key"
PREFIX = "bench:"


def simulator_app() -> Starlette:
    """The simulator as a uvicorn factory: real clock, fast deployments, large uploads."""
    config = SimulatorConfig(
        api_keys=(SIM_KEY,),
        queue_seconds=0.5,
        building_seconds=0.5,
        deploying_seconds=0.5,
        max_body_bytes=80 * 1024 * 1024,
    )
    return CreateOSSimulator(config).app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {process.returncode}")
        try:
            httpx.get(url, timeout=0.5)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer in {timeout} s")


def bench_config(directory: Path) -> Path:
    """config/local.toml with the rate limit raised and a prefix of its own."""
    text = (PROJECT_ROOT / "config" / "local.toml").read_text()
    text = re.sub(r"(?m)^requests = \d+$", "requests = 1000000", text)
    text = re.sub(r'(?m)^redis_key_prefix = ".*"$', f'redis_key_prefix = "{PREFIX}"', text)
    path = directory / "bench.toml"
    path.write_text(text)
    return path


@contextlib.contextmanager
def process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A child process whose output goes to ``log`` (the tables stay readable)."""
    with log.open("wb") as out:
        child = subprocess.Popen(
            args, cwd=PROJECT_ROOT, env={**os.environ, **env}, stdout=out, stderr=out
        )
    try:
        yield child
    finally:
        child.terminate()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


@dataclass
class DeployStack:
    gateway_url: str
    simulator_url: str
    gateway_pid: int
    redis_url: str

    @classmethod
    @contextlib.contextmanager
    def start(cls) -> Iterator[DeployStack]:
        with (
            tempfile.TemporaryDirectory(prefix="bench-deploy-") as tmp,
            EmbeddedRedis(Path(tmp) / "redis") as redis_server,
        ):
            sim_port, gw_port = free_port(), free_port()
            simulator_url = f"http://127.0.0.1:{sim_port}"
            gateway_url = f"http://127.0.0.1:{gw_port}"
            simulator_cmd = [
                sys.executable, "-m", "uvicorn", "--factory", "bench.deploy_stack:simulator_app",
                "--port", str(sim_port), "--log-level", "warning", "--no-access-log",
                "--loop", "uvloop", "--http", "httptools",
            ]  # fmt: skip
            gateway_cmd = [
                sys.executable, "-m", "gateway", "--config", str(bench_config(Path(tmp))),
                "serve", "--port", str(gw_port), "--log-level", "warning",
            ]  # fmt: skip
            gateway_env = {
                "REDIS_URL": redis_server.url,
                "CREATEOS_API_URL": simulator_url,
                "CREATEOS_API_KEY": SIM_KEY,
            }
            with (
                process(simulator_cmd, {}, Path(tmp) / "simulator.log") as simulator,
                process(gateway_cmd, gateway_env, Path(tmp) / "gateway.log") as gateway,
            ):
                wait_for(simulator_url + "/v1/quotas", simulator)
                wait_for(gateway_url + "/health", gateway)
                yield cls(gateway_url, simulator_url, gateway.pid, redis_server.url)

    async def credit(self, wallet: str, micro_usd: int) -> None:
        store = await connect_store(self.redis_url, PREFIX)
        try:
            await Ledger(store).apply(
                wallet, EntryKind.ADJUSTMENT, micro_usd, ref="bench", reason="benchmark credits"
            )
        finally:
            await store.close()


def machine_summary() -> str:
    """nproc, CPU model and Python version, for the tables' captions."""
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    python = sys.version.split()[0]
    return f"{os.cpu_count()} CPUs, {model}, Python {python}"
