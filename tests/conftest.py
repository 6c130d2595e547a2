"""Session fixtures: a real Redis, two real anvil chains with test tokens at the canonical
USDC/USDT addresses, and the gateway app served in-process.

- Redis: ``REDIS_URL`` when set, else an embedded redis-server started for the session. Each
  test gets its own key prefix, so tests never see each other's keys. ``redis_cluster`` (a
  3-master Redis Cluster for the session) and ``replicated_redis`` (a primary, 2 replicas and
  3 Sentinels for one test) start real servers too (``devstack.redis_topology``); without a
  redis-server binary they fail under CI and skip locally.
- anvil: ``AnvilNode`` from ``devstack.anvil`` (binary from ANVIL_BIN, node_modules or
  PATH). Missing anvil fails under CI (``CI`` set) and skips locally with a hint.
- Chains are snapshotted before each test that uses them and reverted after.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from hypothesis import settings as hypothesis_settings

from devstack.anvil import AnvilNode, AnvilNotFound, find_anvil_binary
from devstack.redis_topology import RedisClusterStack, ReplicatedRedis
from gateway.config import PROJECT_ROOT, Settings, load_settings
from gateway.store.embedded import EmbeddedRedis, EmbeddedRedisError, find_redis_server
from tests.support import LOCAL_CONFIG, SettingsFactory, running_gateway

# Fixtures of the deploy tests (CreateOS simulator over HTTP, the gateway wired to it).
pytest_plugins = ["tests.deploy_support"]


# Property tests: random exploration on developers' machines; in CI a fixed derivation of the
# examples from each test (derandomize), so a landing run is reproducible, and no per-example
# deadline on a small shared machine. A counterexample found locally becomes a unit test.
hypothesis_settings.register_profile("ci", derandomize=True, deadline=None)
hypothesis_settings.register_profile("dev", deadline=None)
hypothesis_settings.load_profile("ci" if os.environ.get("CI") else "dev")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="run long fuzz and load tests")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="long run: pass --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


# --- Redis -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    with EmbeddedRedis(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


def _redis_server_binary() -> str:
    try:
        return find_redis_server()
    except EmbeddedRedisError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"redis-server not available for a multi-server topology: {exc}")
        raise  # unreachable; pytest.skip raises


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterStack]:
    """A 3-master Redis Cluster of real servers for the session (no replicas)."""
    binary = _redis_server_binary()
    with RedisClusterStack(tmp_path_factory.mktemp("cluster"), binary=binary) as cluster:
        yield cluster


@pytest.fixture
def replicated_redis(tmp_path: Path) -> Iterator[ReplicatedRedis]:
    """A primary, two replicas and three Sentinels for one test (tests kill the primary)."""
    binary = _redis_server_binary()
    with ReplicatedRedis(tmp_path / "replicated", binary=binary) as replicated:
        yield replicated


@pytest.fixture
def key_prefix() -> str:
    return f"test:{uuid.uuid4().hex[:12]}:"


# --- anvil -------------------------------------------------------------------------------


def _anvil_binary() -> str:
    try:
        return find_anvil_binary()
    except AnvilNotFound as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"anvil not available: {exc}")
        raise  # unreachable; pytest.skip raises


@pytest.fixture(scope="session")
def anvil_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, AnvilNode]]:
    binary = _anvil_binary()
    logs = tmp_path_factory.mktemp("anvil")
    nodes: dict[str, AnvilNode] = {}
    try:
        for name, chain_id in (("arbitrum", 42161), ("base", 8453)):
            node = AnvilNode.start(chain_id, log_dir=logs, binary=binary)
            nodes[name] = node
            node.install_test_tokens()
        yield nodes
    finally:
        for node in nodes.values():
            node.stop()


@pytest.fixture
def chains(anvil_nodes: dict[str, AnvilNode]) -> Iterator[dict[str, AnvilNode]]:
    """Both anvil chains, reverted to their state before the test afterwards."""
    snapshots = {name: node.snapshot() for name, node in anvil_nodes.items()}
    yield anvil_nodes
    for name, node in anvil_nodes.items():
        node.set_automine(True)
        node.revert(snapshots[name])


@pytest.fixture
def arbitrum(chains: dict[str, AnvilNode]) -> AnvilNode:
    return chains["arbitrum"]


@pytest.fixture
def base(chains: dict[str, AnvilNode]) -> AnvilNode:
    return chains["base"]


# --- wallets -----------------------------------------------------------------------------


def new_funded_wallet(node: AnvilNode, *, eth: int = 10**18) -> LocalAccount:
    """A fresh account with gas money on ``node`` (mint tokens separately)."""
    account: LocalAccount = Account.create()
    node.set_balance(account.address, eth)
    return account


@pytest.fixture
def agent() -> LocalAccount:
    """A fresh wallet for signing requests (no chain state)."""
    account: LocalAccount = Account.create()
    return account


# --- settings and the app ----------------------------------------------------------------


@pytest.fixture
def make_settings(redis_url: str, key_prefix: str, sim_url: str) -> SettingsFactory:
    """Settings from config/local.toml pointed at this session's Redis and CreateOS simulator
    (``tests.deploy_support``) and, when given, the anvil nodes; keyword arguments replace any
    field."""

    def factory(nodes: dict[str, AnvilNode] | None = None, **overrides: Any) -> Settings:
        env = {"REDIS_URL": redis_url, "CREATEOS_API_URL": sim_url}
        if nodes:
            for name, node in nodes.items():
                env[f"GATEWAY_RPC_{name.upper()}"] = node.url
        settings = load_settings(LOCAL_CONFIG, env)
        # The reconciler's background loop stays off: tests that need it run passes themselves.
        quiet = dataclasses.replace(settings.reconcile, enabled=False)
        values: dict[str, Any] = {"reconcile": quiet, **overrides}
        return settings.with_overrides(redis_key_prefix=key_prefix, **values)

    return factory


@pytest.fixture
async def gateway(
    make_settings: SettingsFactory, chains: dict[str, AnvilNode]
) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway on both anvil chains and this session's Redis."""
    async with running_gateway(make_settings(chains)) as gw:
        yield gw.client


@pytest.fixture
def project_root() -> Path:
    return PROJECT_ROOT
