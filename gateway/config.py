"""Configuration: one TOML file plus the environment overrides listed in README.md
(Configuration).

``load_settings(path, environ)`` is the only reader of the environment in the gateway. It returns
a frozen ``Settings``; anything invalid raises ``ConfigError`` naming the offending key, so a bad
deployment fails at start-up rather than on the first payment.
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from gateway.errors import BadRequest, ConfigError
from gateway.types import Finality, checksum_address, is_address, usd_to_micro

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_PATH = PROJECT_ROOT / "config" / "gateway.toml"

ENV_CONFIG = "GATEWAY_CONFIG"
ENV_OVERRIDES = (
    "REDIS_URL",
    "REDIS_SENTINELS",
    "REDIS_SENTINEL_MASTER",
    "REDIS_CLUSTER_NODES",
    "REDIS_USERNAME",
    "REDIS_PASSWORD",
    "REDIS_SENTINEL_PASSWORD",
    "REDIS_TLS",
    "REDIS_TLS_CA_FILE",
    "REDIS_MIN_REPLICA_ACKS",
    "CREATEOS_API_URL",
    "CREATEOS_API_KEY",
    "GATEWAY_PAY_TO",
    "GATEWAY_RPC_<CHAIN>",
    "GATEWAY_ADMIN_TOKEN",
    "GATEWAY_TRUSTED_PROXIES",
    "GATEWAY_SETTLER_KEY",
)


@dataclass(frozen=True, slots=True)
class TokenConfig:
    key: str  # "usdc" / "usdt": the name used on the wire
    symbol: str
    address: str  # EIP-55
    decimals: int
    #: The token's EIP-712 domain name and version when it implements EIP-3009
    #: (``transferWithAuthorization``): only such tokens are offered for gasless payment.
    eip712_name: str | None = None
    eip712_version: str | None = None

    @property
    def gasless(self) -> bool:
        """Whether the gateway can settle an EIP-3009 authorization of this token."""
        return self.eip712_name is not None and self.eip712_version is not None


@dataclass(frozen=True, slots=True)
class ChainConfig:
    name: str
    chain_id: int
    rpc_urls: tuple[str, ...]
    pay_to: str  # EIP-55
    finality: Finality
    min_confirmations: int
    tokens: Mapping[str, TokenConfig]  # enabled tokens only, by key
    #: Payments worth more than this wait for ``finalized`` whatever ``finality`` says
    #: (docs/CHAINS.md section 3); None: no threshold.
    finalized_above_micro: int | None = None

    def finality_for(self, amount_micro: int) -> Finality:
        """The finality a payment of ``amount_micro`` must reach before it is credited."""
        if self.finalized_above_micro is not None and amount_micro > self.finalized_above_micro:
            return Finality.FINALIZED
        return self.finality

    def token(self, key: str) -> TokenConfig | None:
        return self.tokens.get(key.lower())


@dataclass(frozen=True, slots=True)
class Pricing:
    price_micro_usd_per_month: int
    minimum_micro_usd: int
    max_months: int

    @property
    def burn_micro_usd_per_hour(self) -> int:
        """Hourly burn of one active project: price per month / 730, rounded up."""
        return -(-self.price_micro_usd_per_month // 730)


@dataclass(frozen=True, slots=True)
class RedisConnection:
    """Where Redis is and how to reach it: exactly one of ``url`` (one server),
    ``sentinels`` + ``sentinel_master`` (the master Sentinel names, followed through
    failovers) or ``cluster_nodes`` (seed nodes of a Redis Cluster); none means the embedded
    server. ``password`` / ``username`` and ``tls`` / ``tls_ca_file`` apply to every data node;
    Sentinels use TLS alike and ``sentinel_password`` (often none). ``min_replica_acks`` > 0:
    writes that something irreversible depends on wait (``WAIT``) for that many replicas, up
    to ``replica_ack_timeout_ms``, or fail with 503."""

    url: str | None = None
    sentinels: tuple[tuple[str, int], ...] = ()
    sentinel_master: str | None = None
    cluster_nodes: tuple[tuple[str, int], ...] = ()
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_password: str | None = field(default=None, repr=False)
    tls: bool = False
    tls_ca_file: str | None = None
    min_replica_acks: int = 0
    replica_ack_timeout_ms: int = 500

    @property
    def topology(self) -> str:
        """``single``, ``sentinel``, ``cluster`` or ``embedded`` (nothing configured)."""
        if self.sentinels:
            return "sentinel"
        if self.cluster_nodes:
            return "cluster"
        return "single" if self.url else "embedded"

    def describe(self) -> str:
        """Where it points, without secrets (for logs and errors)."""
        if self.sentinels:
            hosts = ",".join(f"{h}:{p}" for h, p in self.sentinels)
            return f"sentinel master {self.sentinel_master!r} via {hosts}"
        if self.cluster_nodes:
            return "cluster " + ",".join(f"{h}:{p}" for h, p in self.cluster_nodes)
        url = self.url or ""
        scheme, sep, rest = url.partition("://")
        return f"{scheme}{sep}{rest.rpartition('@')[2]}" if sep else url


@dataclass(frozen=True, slots=True)
class ReconcileConfig:
    """The reconciler's knobs (``[reconcile]`` in config/gateway.toml)."""

    enabled: bool = True
    interval_seconds: float = 60.0
    #: Blocks per ``eth_getLogs`` call, and most blocks scanned per chain and token per pass.
    block_range: int = 2_000
    max_blocks_per_pass: int = 50_000
    #: Where the first pass starts: this many blocks below the head.
    lookback_blocks: int = 10_000
    #: An unclaimed transfer is credited by the reconciler only this long after it was first
    #: seen, so an agent about to submit it is not answered "already processed".
    credit_after_seconds: int = 600
    #: The age limit for transfers the reconciler credits (the pushed path keeps
    #: ``max_payment_age_seconds``).
    max_payment_age_seconds: int = 30 * 24 * 3600
    #: A CreateOS project without a record is adopted only once it is this old (a deploy in
    #: flight records its own project well within it).
    adopt_after_seconds: int = 900


@dataclass(frozen=True, slots=True)
class Settings:
    chains: Mapping[str, ChainConfig]
    default_chain: str
    pricing: Pricing
    auth_window_seconds: int = 60
    nonce_ttl_seconds: int = 300
    rate_limit_requests: int = 30
    rate_limit_window_seconds: int = 60
    failed_auth_requests: int = 10
    failed_auth_window_seconds: int = 60
    no_code_ttl_seconds: int = 60
    max_body_bytes: int = 70 * 1024 * 1024
    max_upload_bytes: int = 50 * 1024 * 1024
    max_upload_files: int = 2000
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    redis_url: str | None = None
    #: Sentinel / Cluster, credentials, TLS and replica acks (``redis_url`` is its ``url``).
    redis: RedisConnection = RedisConnection()
    embedded_redis_dir: Path = PROJECT_ROOT / "data" / "redis"
    redis_key_prefix: str = "gw:"
    admin_token: str | None = None
    createos_api_url: str = "https://api-createos.nodeops.network"
    createos_api_key: str = ""
    upstream_connect_timeout: float = 5.0
    upstream_read_timeout: float = 15.0
    upstream_upload_timeout: float = 120.0
    upstream_max_answer_bytes: int = 8 * 1024 * 1024
    upstream_answer_seconds: float = 30.0
    quote_name_seconds: int = 5
    max_payment_age_seconds: int = 72 * 3600
    rpc_timeout_seconds: float = 8.0
    rpc_max_answer_bytes: int = 4 * 1024 * 1024
    max_receipt_logs: int = 1000
    verify_timeout_seconds: float = 20.0
    pending_retry_after_seconds: int = 5
    recheck_interval_seconds: float = 60.0
    metering_interval_seconds: float = 60.0
    metering_lease_seconds: int = 120
    #: 0x-hex private key of the account that sends EIP-3009 settlements (gas only, never
    #: customer money); None: no gasless payment is offered or accepted.
    settler_key: str | None = field(default=None, repr=False)
    #: 0x-hex private key that signs the EIP-712 receipt of every paid answer (its address is
    #: published at ``GET /agent/receipts``); None: answers carry no signed receipt.
    receipt_key: str | None = field(default=None, repr=False)
    #: An authorization's ``validBefore`` must leave at least this long to settle.
    settle_margin_seconds: int = 30
    #: How long one request waits for a settlement receipt before answering pending.
    settle_wait_seconds: float = 20.0
    #: A settlement claim whose holder died before recording a tx is taken over after this.
    settle_lease_seconds: int = 60
    #: Below this native balance (wei) on a chain, the settler is "low": readiness says
    #: degraded and that chain's gasless offers are withdrawn until it is funded.
    settle_min_gas_wei: int = 500_000_000_000_000  # 0.0005 ETH
    #: How often the settler's gas balances are read, in seconds.
    settle_gas_check_seconds: float = 60.0
    #: Blocks searched back for an ``AuthorizationUsed`` log of an authorization someone else
    #: settled.
    settle_log_lookback_blocks: int = 50_000
    #: How long a 402's MPP challenges stay valid, and the x402 ``maxTimeoutSeconds``.
    challenge_ttl_seconds: int = 300
    #: The gateway's public base URL (scheme://host[:port]) as agents reach it, for the x402
    #: ``resource`` and the MPP ``realm``; None: taken from each request's Host.
    public_url: str | None = None
    #: Reconciler (docs/PAYMENTS.md section 8): one leader every ``reconcile.interval_seconds``.
    reconcile: ReconcileConfig = field(default_factory=lambda: ReconcileConfig())
    #: Ledger compaction: a wallet's hot list is cut back to half this many entries once it
    #: holds more (0: never compact); the rest goes to ``ledger_archive_dir``.
    ledger_max_entries: int = 1000
    ledger_archive_dir: Path = PROJECT_ROOT / "data" / "ledger-archive"
    source: str = field(default="", compare=False)

    def chain(self, name: str) -> ChainConfig | None:
        return self.chains.get(name.lower())

    def require_chain(self, name: str, *, field: str) -> ChainConfig:
        """The named chain (any case, surrounding spaces ignored); 400 ``unknown_chain`` naming
        ``field`` and the configured chains otherwise."""
        found = self.chain(name.strip())
        if found is None:
            raise BadRequest(
                f"Unknown chain {name!r}; supported: {', '.join(self.chains)}",
                code="unknown_chain",
                field=field,
            )
        return found

    def chain_by_id(self, chain_id: int) -> ChainConfig | None:
        for chain in self.chains.values():
            if chain.chain_id == chain_id:
                return chain
        return None

    @property
    def redis_connection(self) -> RedisConnection:
        """``redis`` with ``redis_url`` as its URL (tests and ``dev`` replace the URL alone)."""
        return replace(self.redis, url=self.redis_url)

    @property
    def redis_configured(self) -> bool:
        """Whether the environment names a Redis (else ``serve`` starts an embedded one)."""
        return self.redis_connection.topology != "embedded"

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some fields replaced (tests and the dev stack)."""
        return replace(self, **changes)


def load_settings(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read the TOML file (``path``, else ``$GATEWAY_CONFIG``, else config/gateway.toml),
    apply the environment overrides and validate everything."""
    env = dict(environ or {})
    config_path = Path(path or env.get(ENV_CONFIG) or DEFAULT_CONFIG_PATH)
    try:
        raw = tomllib.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(ENV_CONFIG, f"config file not found: {config_path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(config_path), f"not valid TOML: {exc}") from exc
    return parse_settings(raw, env, source=str(config_path))


def parse_settings(raw: Mapping[str, Any], env: Mapping[str, str], *, source: str = "") -> Settings:
    """Validate a parsed TOML document plus environment overrides into Settings."""
    reader = _Reader(raw)
    gw = "gateway"

    global_pay_to = env.get("GATEWAY_PAY_TO") or reader.get_str(f"{gw}.pay_to", default="")
    chains_raw = reader.get_table("chains")
    if not chains_raw:
        raise ConfigError("chains", "at least one chain must be configured")
    chains: dict[str, ChainConfig] = {}
    seen_ids: set[int] = set()
    for name in chains_raw:
        chain = _parse_chain(reader, name.lower(), name, global_pay_to, env)
        if chain.chain_id in seen_ids:
            raise ConfigError(f"chains.{name}.chain_id", f"duplicate chain id {chain.chain_id}")
        seen_ids.add(chain.chain_id)
        chains[chain.name] = chain

    default_chain = reader.get_str(f"{gw}.default_chain", default=next(iter(chains))).lower()
    if default_chain not in chains:
        raise ConfigError(f"{gw}.default_chain", f"{default_chain!r} is not a configured chain")

    pricing = Pricing(
        price_micro_usd_per_month=reader.get_usd("pricing.price_usd_per_month", default="0.50"),
        minimum_micro_usd=reader.get_usd("pricing.minimum_usd", default="0.50"),
        max_months=reader.get_int("pricing.max_months", default=24, low=1, high=120),
    )
    if pricing.price_micro_usd_per_month <= 0:
        raise ConfigError("pricing.price_usd_per_month", "must be positive")
    if pricing.minimum_micro_usd < 0:
        raise ConfigError("pricing.minimum_usd", "must not be negative")

    auth_window = reader.get_int("auth.window_seconds", default=60, low=1, high=3600)
    nonce_ttl = reader.get_int("auth.nonce_ttl_seconds", default=300, low=1, high=86400)
    if nonce_ttl <= 2 * auth_window:
        raise ConfigError("auth.nonce_ttl_seconds", "must exceed twice auth.window_seconds")

    proxies_text = env.get("GATEWAY_TRUSTED_PROXIES")
    proxies_list: list[str] = (
        [p.strip() for p in proxies_text.split(",") if p.strip()]
        if proxies_text is not None
        else reader.get_str_list(f"{gw}.trusted_proxies", default=[])
    )
    trusted: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for item in proxies_list:
        try:
            trusted.append(ipaddress.ip_network(item, strict=False))
        except ValueError as exc:
            key = "GATEWAY_TRUSTED_PROXIES" if proxies_text is not None else f"{gw}.trusted_proxies"
            raise ConfigError(key, f"not an IP address or CIDR range: {item!r}") from exc

    api_url = (
        env.get("CREATEOS_API_URL") or reader.get_str("upstream.api_url", default="")
    ).rstrip("/")
    if not api_url.startswith(("http://", "https://")):
        key = "CREATEOS_API_URL" if env.get("CREATEOS_API_URL") else "upstream.api_url"
        raise ConfigError(key, "must be an http(s) URL")

    redis = _redis_connection(reader, env)
    redis_url = redis.url

    archive_text = env.get("GATEWAY_LEDGER_ARCHIVE_DIR") or reader.get_str(
        "ledger.archive_dir", default="data/ledger-archive"
    )
    archive_dir = Path(archive_text)
    if not archive_dir.is_absolute():
        archive_dir = Path.cwd() / archive_dir
    interval_text = env.get("GATEWAY_RECONCILE_INTERVAL")
    try:
        reconcile_interval = (
            float(interval_text)
            if interval_text
            else reader.get_float("reconcile.interval_seconds", default=60.0)
        )
    except ValueError as exc:
        raise ConfigError("GATEWAY_RECONCILE_INTERVAL", "must be a number of seconds") from exc
    if reconcile_interval <= 0:
        raise ConfigError("GATEWAY_RECONCILE_INTERVAL", "must be positive")
    reconcile = ReconcileConfig(
        enabled=reader.get_bool("reconcile.enabled", default=True),
        interval_seconds=reconcile_interval,
        block_range=reader.get_int("reconcile.block_range", default=2_000, low=1),
        max_blocks_per_pass=reader.get_int("reconcile.max_blocks_per_pass", default=50_000, low=1),
        lookback_blocks=reader.get_int("reconcile.lookback_blocks", default=10_000, low=0),
        credit_after_seconds=reader.get_int("reconcile.credit_after_seconds", default=600, low=0),
        max_payment_age_seconds=reader.get_int(
            "reconcile.max_payment_age_seconds", default=30 * 24 * 3600, low=60
        ),
        adopt_after_seconds=reader.get_int("reconcile.adopt_after_seconds", default=900, low=0),
    )

    embedded_dir = Path(reader.get_str(f"{gw}.embedded_redis_dir", default="data/redis"))
    if not embedded_dir.is_absolute():
        embedded_dir = Path.cwd() / embedded_dir

    prefix = reader.get_str(f"{gw}.redis_key_prefix", default="gw:")
    if not prefix or any(c.isspace() or c in "{}" for c in prefix):
        raise ConfigError(
            f"{gw}.redis_key_prefix", "must be non-empty, without whitespace or braces"
        )  # a brace would change the hash slot of every key on a Redis Cluster

    max_body = reader.get_int(f"{gw}.max_body_bytes", default=70 * 1024 * 1024, low=1024)
    max_upload = reader.get_int(f"{gw}.max_upload_bytes", default=50 * 1024 * 1024, low=1024)
    if max_upload > max_body:
        raise ConfigError(f"{gw}.max_upload_bytes", "must not exceed gateway.max_body_bytes")

    return Settings(
        chains=chains,
        default_chain=default_chain,
        pricing=pricing,
        auth_window_seconds=auth_window,
        nonce_ttl_seconds=nonce_ttl,
        rate_limit_requests=reader.get_int("rate_limit.requests", default=30, low=1),
        rate_limit_window_seconds=reader.get_int("rate_limit.window_seconds", default=60, low=1),
        failed_auth_requests=reader.get_int("rate_limit.failed_auth_requests", default=10, low=1),
        failed_auth_window_seconds=reader.get_int(
            "rate_limit.failed_auth_window_seconds", default=60, low=1
        ),
        no_code_ttl_seconds=reader.get_int(
            "auth.no_code_ttl_seconds", default=60, low=1, high=3600
        ),
        max_body_bytes=max_body,
        max_upload_bytes=max_upload,
        max_upload_files=reader.get_int(f"{gw}.max_upload_files", default=2000, low=1),
        trusted_proxies=tuple(trusted),
        redis_url=redis_url,
        redis=redis,
        embedded_redis_dir=embedded_dir,
        redis_key_prefix=prefix,
        admin_token=env.get("GATEWAY_ADMIN_TOKEN") or None,
        createos_api_url=api_url,
        createos_api_key=env.get("CREATEOS_API_KEY")
        or reader.get_str("upstream.api_key", default=""),
        upstream_connect_timeout=reader.get_float("upstream.connect_timeout_seconds", default=5.0),
        upstream_read_timeout=reader.get_float("upstream.read_timeout_seconds", default=15.0),
        upstream_upload_timeout=reader.get_float("upstream.upload_timeout_seconds", default=120.0),
        upstream_max_answer_bytes=reader.get_int(
            "upstream.max_answer_bytes", default=8 * 1024 * 1024, low=1024
        ),
        upstream_answer_seconds=reader.get_float("upstream.answer_seconds", default=30.0),
        quote_name_seconds=reader.get_int(
            "upstream.quote_name_seconds", default=5, low=0, high=300
        ),
        max_payment_age_seconds=reader.get_int(
            "payments.max_payment_age_seconds", default=72 * 3600, low=60
        ),
        rpc_timeout_seconds=reader.get_float("payments.rpc_timeout_seconds", default=8.0),
        rpc_max_answer_bytes=reader.get_int(
            "payments.rpc_max_answer_bytes", default=4 * 1024 * 1024, low=1024
        ),
        max_receipt_logs=reader.get_int("payments.max_receipt_logs", default=1000, low=1),
        verify_timeout_seconds=reader.get_float("payments.verify_timeout_seconds", default=20.0),
        pending_retry_after_seconds=reader.get_int(
            "payments.pending_retry_after_seconds", default=5, low=1, high=600
        ),
        recheck_interval_seconds=reader.get_float(
            "payments.recheck_interval_seconds", default=60.0
        ),
        metering_interval_seconds=reader.get_float("metering.interval_seconds", default=60.0),
        metering_lease_seconds=reader.get_int("metering.lease_seconds", default=120, low=5),
        settler_key=_private_key("GATEWAY_SETTLER_KEY", env.get("GATEWAY_SETTLER_KEY")),
        receipt_key=_private_key("GATEWAY_RECEIPT_KEY", env.get("GATEWAY_RECEIPT_KEY")),
        settle_margin_seconds=reader.get_int(
            "settlement.margin_seconds", default=30, low=1, high=3600
        ),
        settle_wait_seconds=reader.get_float("settlement.wait_seconds", default=20.0),
        settle_lease_seconds=reader.get_int(
            "settlement.lease_seconds", default=60, low=5, high=3600
        ),
        settle_log_lookback_blocks=reader.get_int(
            "settlement.log_lookback_blocks", default=50_000, low=1
        ),
        settle_min_gas_wei=_eth_to_wei(
            reader.get_str("settlement.min_gas_eth", default="0.0005"), "settlement.min_gas_eth"
        ),
        settle_gas_check_seconds=reader.get_float("settlement.gas_check_seconds", default=60.0),
        challenge_ttl_seconds=reader.get_int(
            "settlement.challenge_ttl_seconds", default=300, low=60, high=30 * 86_400
        ),
        public_url=_public_url(
            env.get("GATEWAY_PUBLIC_URL") or reader.get_str("gateway.public_url", default="")
        ),
        reconcile=reconcile,
        ledger_max_entries=reader.get_int("ledger.max_entries", default=1000, low=0),
        ledger_archive_dir=archive_dir,
        source=source,
    )


def _redis_connection(reader: _Reader, env: Mapping[str, str]) -> RedisConnection:
    """The ``REDIS_*`` environment and the ``[redis]`` table; one topology at most."""
    url = env.get("REDIS_URL", "").strip() or None
    if url is not None and not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("REDIS_URL", "must start with redis://, rediss:// or unix://")
    sentinels = _host_ports("REDIS_SENTINELS", env.get("REDIS_SENTINELS", ""))
    cluster = _host_ports("REDIS_CLUSTER_NODES", env.get("REDIS_CLUSTER_NODES", ""))
    chosen = [name for name, on in (("REDIS_URL", url), ("REDIS_SENTINELS", sentinels),
                                    ("REDIS_CLUSTER_NODES", cluster)) if on]  # fmt: skip
    if len(chosen) > 1:
        raise ConfigError(chosen[1], f"set only one of REDIS_URL, REDIS_SENTINELS, "
                          f"REDIS_CLUSTER_NODES (found {' and '.join(chosen)})")  # fmt: skip
    master = env.get("REDIS_SENTINEL_MASTER", "").strip() or None
    if sentinels and master is None:
        raise ConfigError("REDIS_SENTINEL_MASTER", "required with REDIS_SENTINELS (the name "
                          "the Sentinels monitor, e.g. mymaster)")  # fmt: skip
    if master is not None and not sentinels:
        raise ConfigError("REDIS_SENTINEL_MASTER", "only meaningful with REDIS_SENTINELS")
    tls_text = env.get("REDIS_TLS", "").strip().lower()
    if tls_text not in ("", "true", "false", "1", "0", "yes", "no"):
        raise ConfigError("REDIS_TLS", f"must be true or false, not {tls_text!r}")
    tls = tls_text in ("true", "1", "yes") or bool(url and url.startswith("rediss://"))
    ca_file = env.get("REDIS_TLS_CA_FILE", "").strip() or (
        reader.get_str("redis.tls_ca_file", default="") or None
    )
    if ca_file is not None:
        if not Path(ca_file).is_file():
            key = "REDIS_TLS_CA_FILE" if env.get("REDIS_TLS_CA_FILE") else "redis.tls_ca_file"
            raise ConfigError(key, f"CA file not found: {ca_file}")
        tls = True
    if url and url.startswith("redis://") and tls_text in ("true", "1", "yes"):
        raise ConfigError("REDIS_TLS", "REDIS_URL says redis:// (plain); use rediss:// for TLS")
    acks = reader.get_int("redis.min_replica_acks", default=0, low=0, high=16)
    acks_text = env.get("REDIS_MIN_REPLICA_ACKS", "").strip()
    if acks_text:
        if not acks_text.isdigit() or int(acks_text) > 16:
            raise ConfigError("REDIS_MIN_REPLICA_ACKS", "must be an integer from 0 to 16")
        acks = int(acks_text)
    return RedisConnection(
        url=url,
        sentinels=sentinels,
        sentinel_master=master,
        cluster_nodes=cluster,
        username=env.get("REDIS_USERNAME") or None,
        password=env.get("REDIS_PASSWORD") or None,
        sentinel_password=env.get("REDIS_SENTINEL_PASSWORD") or None,
        tls=tls,
        tls_ca_file=ca_file,
        min_replica_acks=acks,
        replica_ack_timeout_ms=reader.get_int(
            "redis.replica_ack_timeout_ms", default=500, low=10, high=60_000
        ),
    )


def _host_ports(key: str, text: str) -> tuple[tuple[str, int], ...]:
    """``host:port,host:port`` (IPv6 as ``[::1]:port``); empty text is no nodes."""
    nodes = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        host, sep, port_text = item.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ConfigError(key, f"not host:port: {item!r}")
        nodes.append((host, int(port_text)))
    return tuple(nodes)


def _eth_to_wei(value: str, key: str) -> int:
    try:
        wei = Decimal(value.strip()) * 10**18
    except InvalidOperation:
        wei = Decimal(-1)
    if wei < 0 or wei != wei.to_integral_value():
        raise ConfigError(
            key, f"must be a non-negative ETH amount (at most 18 decimals), got {value!r}"
        )
    return int(wei)


def _public_url(value: str) -> str | None:
    """``GATEWAY_PUBLIC_URL`` / ``server.public_url``: an absolute http(s) URL without path."""
    text = value.strip().rstrip("/")
    if not text:
        return None
    scheme, sep, rest = text.partition("://")
    if scheme not in ("http", "https") or not sep or not rest or "/" in rest:
        raise ConfigError(
            "GATEWAY_PUBLIC_URL", f"must be http(s)://host[:port] with no path, got {value!r}"
        )
    return text


_SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def _private_key(name: str, value: str | None) -> str | None:
    """A key from the environment (``GATEWAY_SETTLER_KEY``, ``GATEWAY_RECEIPT_KEY``): None
    when unset or empty, else 0x and 64 hex digits."""
    if not value:
        return None
    text = value.strip()
    digits = text[2:] if text.lower().startswith("0x") else ""
    if len(digits) != 64 or any(c not in "0123456789abcdefABCDEF" for c in digits):
        raise ConfigError(name, "must be 0x followed by 64 hex digits")
    if not 0 < int(digits, 16) < _SECP256K1_ORDER:
        raise ConfigError(name, "not a valid secp256k1 private key")
    return "0x" + digits.lower()


def _parse_chain(
    reader: _Reader, name: str, raw_name: str, global_pay_to: str, env: Mapping[str, str]
) -> ChainConfig:
    base = f"chains.{raw_name}"
    chain_id = reader.get_int(f"{base}.chain_id", low=1)
    env_key = f"GATEWAY_RPC_{name.upper()}"
    if env.get(env_key):
        urls = [u.strip() for u in env[env_key].split(",") if u.strip()]
        url_key = env_key
    else:
        urls = reader.get_str_list(f"{base}.rpc_urls")
        url_key = f"{base}.rpc_urls"
    if not urls:
        raise ConfigError(url_key, "at least one RPC URL is required")
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(url_key, f"not an http(s) URL: {url!r}")

    if env.get("GATEWAY_PAY_TO"):
        pay_to, pay_key = env["GATEWAY_PAY_TO"], "GATEWAY_PAY_TO"
    else:
        pay_to = reader.get_str(f"{base}.pay_to", default="") or global_pay_to
        pay_key = (
            f"{base}.pay_to" if reader.get_str(f"{base}.pay_to", default="") else "gateway.pay_to"
        )
    if not pay_to:
        raise ConfigError(
            "GATEWAY_PAY_TO",
            f"no payment recipient for chain {name}: set GATEWAY_PAY_TO or {base}.pay_to",
        )
    if not is_address(pay_to) or int(pay_to, 16) == 0:
        raise ConfigError(pay_key, f"not a valid non-zero address: {pay_to!r}")

    finality_text = reader.get_str(f"{base}.finality", default="latest")
    try:
        finality = Finality(finality_text)
    except ValueError as exc:
        raise ConfigError(f"{base}.finality", "must be latest, safe or finalized") from exc

    tokens: dict[str, TokenConfig] = {}
    for key in reader.get_table(f"{base}.tokens"):
        tbase = f"{base}.tokens.{key}"
        address = reader.get_str(f"{tbase}.address")
        if not is_address(address):
            raise ConfigError(f"{tbase}.address", f"not an address: {address!r}")
        if not reader.get_bool(f"{tbase}.enabled", default=True):
            continue
        eip712_name = reader.get_str(f"{tbase}.eip712_name", default="") or None
        eip712_version = reader.get_str(f"{tbase}.eip712_version", default="") or None
        if (eip712_name is None) != (eip712_version is None):
            raise ConfigError(
                f"{tbase}.eip712_version" if eip712_version is None else f"{tbase}.eip712_name",
                "eip712_name and eip712_version are set together or not at all",
            )
        tokens[key.lower()] = TokenConfig(
            key=key.lower(),
            symbol=reader.get_str(f"{tbase}.symbol", default=key.upper()),
            address=checksum_address(address),
            decimals=reader.get_int(f"{tbase}.decimals", low=0, high=36),
            eip712_name=eip712_name,
            eip712_version=eip712_version,
        )
    if not tokens:
        raise ConfigError(f"{base}.tokens", "at least one enabled token is required")

    return ChainConfig(
        name=name,
        chain_id=chain_id,
        rpc_urls=tuple(urls),
        pay_to=checksum_address(pay_to),
        finality=finality,
        min_confirmations=reader.get_int(
            f"{base}.min_confirmations", default=1, low=1, high=10_000
        ),
        tokens=tokens,
        finalized_above_micro=(
            reader.get_usd(f"{base}.finalized_above_usd")
            if reader.get_str(f"{base}.finalized_above_usd", default="")
            else None
        ),
    )


_MISSING: Any = object()


class _Reader:
    """Typed access to dotted keys of a TOML document; errors name the key."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self._raw = raw

    def _get(self, key: str, default: Any) -> Any:
        node: Any = self._raw
        for part in key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                if default is _MISSING:
                    raise ConfigError(key, "missing")
                return default
            node = node[part]
        return node

    def get_table(self, key: str) -> Mapping[str, Any]:
        value = self._get(key, {})
        if not isinstance(value, Mapping):
            raise ConfigError(key, "must be a table")
        return value

    def get_str(self, key: str, default: Any = _MISSING) -> str:
        value = self._get(key, default)
        if not isinstance(value, str):
            raise ConfigError(key, "must be a string")
        return value

    def get_bool(self, key: str, default: Any = _MISSING) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise ConfigError(key, "must be true or false")
        return value

    def get_int(
        self, key: str, default: Any = _MISSING, low: int | None = None, high: int | None = None
    ) -> int:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, "must be an integer")
        if low is not None and value < low:
            raise ConfigError(key, f"must be at least {low}")
        if high is not None and value > high:
            raise ConfigError(key, f"must be at most {high}")
        return value

    def get_float(self, key: str, default: Any = _MISSING) -> float:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError(key, "must be a positive number")
        return float(value)

    def get_usd(self, key: str, default: Any = _MISSING) -> int:
        value = self._get(key, default)
        if not isinstance(value, str):
            raise ConfigError(key, 'must be a decimal string such as "0.50"')
        try:
            return usd_to_micro(value)
        except ValueError as exc:
            raise ConfigError(key, str(exc)) from exc

    def get_str_list(self, key: str, default: Any = _MISSING) -> list[str]:
        value = self._get(key, default)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(key, "must be a list of strings")
        return list(value)
