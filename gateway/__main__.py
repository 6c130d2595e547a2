"""Command line: ``python -m gateway serve [--host] [--port]`` and the operator reads."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from gateway.config import load_settings
from gateway.errors import ConfigError
from gateway.logs import configure_logging


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
        # log_config=None: uvicorn keeps the root handler set up by configure_logging (JSON,
        # redacted); the gateway writes its own access line per request.
        uvicorn.run(
            app,
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            log_config=None,
            access_log=False,
        )
    finally:
        if embedded is not None:
            embedded.stop()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gateway", description=__doc__)
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
    serve.set_defaults(run=_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(
        getattr(args, "log_format", "text"), getattr(args, "log_level", "info").upper()
    )
    try:
        code: int = args.run(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
