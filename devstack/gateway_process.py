"""A real gateway process (``python -m gateway serve``, uvicorn) and its config file, for
multi-process tests, crash tests and the load benchmark.

    config = write_config(tmp / "gw.toml", LOCAL_CONFIG, {"gateway.redis_key_prefix": "x:"})
    with GatewayProcess(config, {"REDIS_URL": url}, tmp / "gw.log") as gateway:
        httpx.get(gateway.url + "/health")
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from gateway.config import PROJECT_ROOT


def write_config(path: Path, base: Path, changes: Mapping[str, Any]) -> Path:
    """``base`` (a TOML config) with dotted keys replaced (``{"upstream.read_timeout_seconds":
    1}``), written to ``path``. Values are strings, numbers, booleans or lists of those."""
    document = tomllib.loads(base.read_text(encoding="utf-8"))
    for dotted, value in changes.items():
        table = document
        *parents, leaf = dotted.split(".")
        for name in parents:
            table = table.setdefault(name, {})
        table[leaf] = value
    path.write_text("\n".join(_toml_tables(document, ())), encoding="utf-8")
    return path


def _toml_tables(table: Mapping[str, Any], prefix: tuple[str, ...]) -> Iterator[str]:
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
    if prefix:
        yield f"[{'.'.join(prefix)}]"
    for key, value in scalars.items():
        yield f"{key} = {json.dumps(value)}"  # JSON scalars and lists are valid TOML here
    for key, value in table.items():
        if isinstance(value, dict):
            yield from _toml_tables(value, (*prefix, key))


class GatewayProcess:
    """``python -m gateway serve`` as a real process (uvicorn), for multi-process, crash and
    restart tests and the load benchmark. The port is chosen once, so a process killed and
    started again serves the same URL. ``env`` adds to the environment (REDIS_URL,
    GATEWAY_RPC_*, CREATEOS_API_URL...); output goes to ``log_path``."""

    def __init__(
        self,
        config: Path,
        env: Mapping[str, str],
        log_path: Path,
        *,
        start_timeout: float = 30.0,
        log_level: str = "warning",
    ) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = config
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.start_timeout = start_timeout
        self.log_level = log_level
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> GatewayProcess:
        """Start and return once ``/health`` answers; raises with the log tail otherwise."""
        command = [sys.executable, "-m", "gateway", "--config", str(self.config), "serve",
                   "--port", str(self.port), "--log-level", self.log_level]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, cwd=PROJECT_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        self.starts += 1
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited: {self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"gateway did not start: {self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up (a crash)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
