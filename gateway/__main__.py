"""Command line: ``python -m gateway serve [--host] [--port]``, the operator reads, the agent's
commands (``deploy``, ``projects``, ``status``, ``logs``, ``delete``, ``balance``, ...) and the
local stack (``dev [--demo]``).

Agent commands exit with 0 success, 1 other failure, 2 usage error, 3 payment refused (the
quote is above the spend cap), 4 build failed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from gateway.config import load_settings
from gateway.errors import ConfigError


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.app import create_app
    from gateway.store.embedded import EmbeddedRedis, EmbeddedRedisError

    settings = load_settings(args.config, os.environ)
    embedded: EmbeddedRedis | None = None
    if settings.redis_url is None:
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
        uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)
    finally:
        if embedded is not None:
            embedded.stop()
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
    serve.set_defaults(run=_serve)
    from gateway.client import cli as agent_cli
    from gateway.devstack import stack

    stack.add_command(sub, os.environ)
    agent_cli.add_commands(sub, os.environ)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        code: int = args.run(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
