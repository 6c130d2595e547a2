"""Configuration (README.md, Configuration): the shipped mainnet defaults, every environment
override by its documented name, and invalid values refused at start-up with a message naming the
key (from ``load_settings`` and from ``python -m gateway serve`` as a process)."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from devstack.gateway_process import write_config
from gateway.config import DEFAULT_CONFIG_PATH, PROJECT_ROOT, load_settings
from gateway.errors import ConfigError
from gateway.types import Finality

PAY_TO = "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720"
ENV = {"GATEWAY_PAY_TO": PAY_TO}


def test_mainnet_defaults() -> None:
    settings = load_settings(DEFAULT_CONFIG_PATH, ENV)
    assert {n: c.chain_id for n, c in settings.chains.items()} == {"arbitrum": 42161, "base": 8453}
    arbitrum, base = settings.chains["arbitrum"], settings.chains["base"]
    assert arbitrum.tokens["usdc"].address == "0xaf88d065e77c8cC2239327C5EDb3A432268e5831"
    assert arbitrum.tokens["usdt"].address == "0xFd086bC7CD5C481DCC9C85ebE478A1C0b69FCbb9"
    assert base.tokens["usdc"].address == "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
    assert all(t.decimals == 6 for c in settings.chains.values() for t in c.tokens.values())
    assert arbitrum.rpc_urls[0] == "https://arb1.arbitrum.io/rpc"
    assert arbitrum.finality is Finality.LATEST and arbitrum.min_confirmations == 1
    assert arbitrum.finalized_above_micro is None
    assert settings.default_chain == "arbitrum"
    assert settings.rate_limit_requests == 30 and settings.auth_window_seconds == 60
    assert settings.redis_url is None and settings.admin_token is None
    assert {c.pay_to for c in settings.chains.values()} == {PAY_TO}
    assert settings.reconcile.enabled and settings.reconcile.interval_seconds == 60.0
    assert settings.reconcile.max_payment_age_seconds == 30 * 24 * 3600
    assert settings.ledger_max_entries == 1000


def test_every_environment_override(tmp_path: Path) -> None:
    other = write_config(tmp_path / "other.toml", DEFAULT_CONFIG_PATH, {"rate_limit.requests": 7})
    env = {
        "GATEWAY_CONFIG": str(other),
        "REDIS_URL": "redis://10.1.2.3:6380/2",
        "CREATEOS_API_URL": "https://createos.example",
        "CREATEOS_API_KEY": "skp_test",
        "GATEWAY_PAY_TO": "0x" + "ab" * 20,
        "GATEWAY_RPC_ARBITRUM": "https://a.example/rpc, https://b.example/rpc",
        "GATEWAY_RPC_BASE": "https://c.example/rpc",
        "GATEWAY_ADMIN_TOKEN": "operator-secret",
        "GATEWAY_TRUSTED_PROXIES": "10.0.0.5, 192.168.0.0/16",
        "GATEWAY_RECONCILE_INTERVAL": "15",
        "GATEWAY_LEDGER_ARCHIVE_DIR": str(tmp_path / "archive"),
    }
    settings = load_settings(None, env)
    assert settings.reconcile.interval_seconds == 15.0
    assert settings.ledger_archive_dir == tmp_path / "archive"
    assert settings.rate_limit_requests == 7  # from GATEWAY_CONFIG
    assert settings.redis_url == "redis://10.1.2.3:6380/2"
    assert settings.createos_api_url == "https://createos.example"
    assert settings.createos_api_key == "skp_test"
    assert {c.pay_to.lower() for c in settings.chains.values()} == {"0x" + "ab" * 20}
    assert settings.chains["arbitrum"].rpc_urls == (
        "https://a.example/rpc",
        "https://b.example/rpc",
    )  # failover order kept
    assert settings.chains["base"].rpc_urls == ("https://c.example/rpc",)
    assert settings.admin_token == "operator-secret"
    assert settings.trusted_proxies == (
        ipaddress.ip_network("10.0.0.5/32"),
        ipaddress.ip_network("192.168.0.0/16"),
    )


@pytest.mark.parametrize(
    ("changes", "env", "key"),
    [
        ({"gateway.pay_to": ""}, {}, "GATEWAY_PAY_TO"),
        ({}, {"GATEWAY_PAY_TO": "0x1234"}, "GATEWAY_PAY_TO"),
        ({"chains.arbitrum.finality": "soon"}, ENV, "chains.arbitrum.finality"),
        ({"chains.arbitrum.rpc_urls": ["ftp://x"]}, ENV, "chains.arbitrum.rpc_urls"),
        ({}, {**ENV, "GATEWAY_RPC_BASE": "not a url"}, "GATEWAY_RPC_BASE"),
        ({"chains.base.tokens.usdc.address": "0xnope"}, ENV, "chains.base.tokens.usdc.address"),
        ({"chains.base.min_confirmations": 0}, ENV, "chains.base.min_confirmations"),
        ({"chains.base.finalized_above_usd": "lots"}, ENV, "chains.base.finalized_above_usd"),
        ({"pricing.price_usd_per_month": "-1"}, ENV, "pricing.price_usd_per_month"),
        ({}, {**ENV, "REDIS_URL": "http://redis"}, "REDIS_URL"),
        ({}, {**ENV, "REDIS_SENTINELS": "10.0.0.1:26379"}, "REDIS_SENTINEL_MASTER"),
        ({}, {**ENV, "REDIS_SENTINEL_MASTER": "gw"}, "REDIS_SENTINEL_MASTER"),
        (
            {},
            {**ENV, "REDIS_SENTINELS": "10.0.0.1", "REDIS_SENTINEL_MASTER": "gw"},
            "REDIS_SENTINELS",
        ),
        ({}, {**ENV, "REDIS_CLUSTER_NODES": "a:1,b:99999"}, "REDIS_CLUSTER_NODES"),
        (
            {},
            {**ENV, "REDIS_URL": "redis://x", "REDIS_CLUSTER_NODES": "a:1"},
            "REDIS_CLUSTER_NODES",
        ),
        ({}, {**ENV, "REDIS_CLUSTER_NODES": "a:1", "REDIS_TLS": "maybe"}, "REDIS_TLS"),
        ({}, {**ENV, "REDIS_URL": "redis://x", "REDIS_TLS": "true"}, "REDIS_TLS"),
        (
            {},
            {**ENV, "REDIS_URL": "rediss://x", "REDIS_TLS_CA_FILE": "/no/such/ca.pem"},
            "REDIS_TLS_CA_FILE",
        ),
        ({"redis.min_replica_acks": -1}, ENV, "redis.min_replica_acks"),
        ({"gateway.redis_key_prefix": "gw{x}:"}, ENV, "gateway.redis_key_prefix"),
        ({}, {**ENV, "REDIS_MIN_REPLICA_ACKS": "one"}, "REDIS_MIN_REPLICA_ACKS"),
        ({"redis.replica_ack_timeout_ms": 0}, ENV, "redis.replica_ack_timeout_ms"),
        ({}, {**ENV, "GATEWAY_TRUSTED_PROXIES": "not-an-ip"}, "GATEWAY_TRUSTED_PROXIES"),
        ({}, {**ENV, "GATEWAY_SETTLER_KEY": "0x1234"}, "GATEWAY_SETTLER_KEY"),
        ({}, {**ENV, "GATEWAY_RECONCILE_INTERVAL": "soon"}, "GATEWAY_RECONCILE_INTERVAL"),
        ({"reconcile.block_range": 0}, ENV, "reconcile.block_range"),
        ({}, {**ENV, "GATEWAY_SETTLER_KEY": "0x" + "0" * 64}, "GATEWAY_SETTLER_KEY"),
        ({}, {**ENV, "GATEWAY_SETTLER_KEY": "0x" + "f" * 64}, "GATEWAY_SETTLER_KEY"),
        (
            {"chains.base.tokens.usdc.eip712_version": ""},
            ENV,
            "chains.base.tokens.usdc.eip712_version",
        ),
    ],
)
def test_invalid_values_name_their_key(
    tmp_path: Path, changes: dict[str, Any], env: dict[str, str], key: str
) -> None:
    path = write_config(tmp_path / "gateway.toml", DEFAULT_CONFIG_PATH, changes)
    with pytest.raises(ConfigError) as refused:
        load_settings(path, env)
    assert refused.value.key == key, str(refused.value)
    assert key in str(refused.value)


def test_the_three_redis_topologies_with_password_and_tls(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n", encoding="utf-8")
    single = load_settings(None, {**ENV, "REDIS_URL": "rediss://:secret@redis.example:6380/0"})
    assert single.redis_connection.topology == "single" and single.redis_connection.tls
    assert "secret" not in single.redis_connection.describe()
    sentinel = load_settings(None, {
        **ENV, "REDIS_SENTINELS": "10.0.0.1:26379, [::1]:26380", "REDIS_SENTINEL_MASTER": "gw",
        "REDIS_PASSWORD": "pw", "REDIS_TLS": "true", "REDIS_TLS_CA_FILE": str(ca),
    }).redis_connection  # fmt: skip
    assert sentinel.topology == "sentinel" and sentinel.sentinel_master == "gw"
    assert sentinel.sentinels == (("10.0.0.1", 26379), ("::1", 26380))
    assert (sentinel.password, sentinel.tls, sentinel.tls_ca_file) == ("pw", True, str(ca))
    assert "pw" not in repr(sentinel)
    cluster = load_settings(None, {**ENV, "REDIS_CLUSTER_NODES": "a:7000,b:7001,c:7002"})
    assert cluster.redis_connection.cluster_nodes == (("a", 7000), ("b", 7001), ("c", 7002))
    assert cluster.redis_configured and cluster.redis_url is None
    assert cluster.redis_connection.min_replica_acks == 0  # the default: a single server
    acks = load_settings(None, {**ENV, "REDIS_URL": "redis://r", "REDIS_MIN_REPLICA_ACKS": "2"})
    assert acks.redis_connection.min_replica_acks == 2
    assert not load_settings(None, ENV).redis_configured  # nothing set: the embedded one


def test_unreadable_files_are_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "missing.toml", ENV)
    broken = tmp_path / "broken.toml"
    broken.write_text("[gateway\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(broken, ENV)


def test_finalized_above_usd_sets_the_threshold(tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "gateway.toml", DEFAULT_CONFIG_PATH, {"chains.base.finalized_above_usd": "250"}
    )
    base = load_settings(path, ENV).chains["base"]
    assert base.finalized_above_micro == 250_000_000
    assert base.finality_for(250_000_000) is Finality.LATEST
    assert base.finality_for(250_000_001) is Finality.FINALIZED


def test_serve_refuses_an_invalid_config_naming_the_key(tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "gateway.toml", DEFAULT_CONFIG_PATH, {"chains.arbitrum.finality": "soon"}
    )
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "--config", str(path), "serve", "--port", "1"],
        cwd=PROJECT_ROOT,
        env={"PATH": "/usr/bin:/bin", "GATEWAY_PAY_TO": PAY_TO},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "chains.arbitrum.finality" in done.stderr
    assert "Traceback" not in done.stderr


def test_settler_key_and_the_usdc_domain_are_read(tmp_path: Path) -> None:
    key = "0x" + "ab" * 32
    settings = load_settings(
        DEFAULT_CONFIG_PATH,
        {**ENV, "GATEWAY_SETTLER_KEY": key.upper()[:2].lower() + key[2:].upper()},
    )
    assert settings.settler_key == key
    assert key not in repr(settings)
    usdc = settings.chains["base"].tokens["usdc"]
    assert (usdc.eip712_name, usdc.eip712_version, usdc.gasless) == ("USD Coin", "2", True)
    assert not settings.chains["base"].tokens["usdt"].gasless
    assert load_settings(DEFAULT_CONFIG_PATH, ENV).settler_key is None
