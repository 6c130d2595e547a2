"""The agent's command line: ``deploy``, ``redeploy``, ``projects``, ``status``, ``logs``,
``delete``, ``balance`` and ``topup``, registered on ``python -m gateway`` by ``add_commands``.

Human output by default (progress on stderr, the result on stdout); ``--json`` prints one JSON
object on stdout instead. The operator's reads (``credits <address>``, ``payment <chain> <tx>``)
are other commands; the agent's own credit balance is ``balance``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import json
import logging
import sys
from collections.abc import Callable, Coroutine, Mapping
from decimal import Decimal, InvalidOperation
from enum import IntEnum
from pathlib import Path
from typing import Any, TextIO

from gateway.client.agent import PAY_MODES, AgentClient
from gateway.client.bundle import BundleError, collect
from gateway.client.environment import AgentEnvironmentError, read_agent_environment
from gateway.client.envvars import EnvError, collect_env
from gateway.client.errors import (
    AskedToPayAgain,
    BuildFailed,
    ClientError,
    CreditsCoverQuote,
    PaymentRejected,
    SpendCapExceeded,
)
from gateway.client.models import Progress


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1  # anything else: gateway refused, unreachable, payment failed, timeout
    USAGE = 2  # bad arguments, missing/invalid environment, DIR not deployable
    PAYMENT_REFUSED = 3  # above --max-usd, or the credits cover it (no --use-credits): not paid
    BUILD_FAILED = 4  # the deployment ended "failed"


ENVIRONMENT_VARIABLES_HELP = """\
environment:
  GATEWAY_URL             the gateway (default http://127.0.0.1:8402)
  AGENT_PRIVATE_KEY       the wallet that signs requests and pays (0x + 64 hex)
  AGENT_RPC_URL_<CHAIN>   RPC URL to pay on that chain (e.g. AGENT_RPC_URL_ARBITRUM)
  AGENT_RPC_URL           RPC URL for any chain without its own
  AGENT_MAX_USD           default spend cap of one command in USD (default 5)
  AGENT_STATE_DIR         where paid-but-unused txs are remembered
                          (default ~/.cache/agent-deploy-gateway)
  AGENT_UNREACHABLE_SECONDS  how long to retry a gateway that does not answer (default 30)
"""
ENVIRONMENT_HELP = (
    ENVIRONMENT_VARIABLES_HELP
    + """
exit codes:
  0 success · 1 other failure · 2 usage error · 4 build failed
  3 payment refused: above the spend cap, or the credits already cover the deploy but other
    live projects share them (--use-credits deploys on them)
"""
)


class UsageError(Exception):
    """A problem with the arguments or the environment (exit code 2)."""


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], environ: Mapping[str, str]
) -> None:
    """Register the agent commands; each runs with ``environ`` (the caller's environment)."""

    def command(name: str, help_text: str, run: Callable[..., Coroutine[Any, Any, int]]) -> Any:
        parser = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=ENVIRONMENT_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        parser.add_argument("--json", action="store_true", help="print one JSON object")
        parser.set_defaults(run=functools.partial(_run, run, environ=environ))
        return parser

    deploy = command("deploy", "deploy DIR as a new project, paying the quote if needed", _deploy)
    deploy.add_argument("directory", metavar="DIR", type=Path)
    deploy.add_argument("--name", required=True, help="unique project name (4-32 of A-Za-z0-9-)")
    deploy.add_argument("--display-name", help="display name (default: the name)")
    _payment_options(deploy)
    deploy.add_argument("--no-wait", action="store_true", help="return once the build started")
    deploy.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a runtime environment variable of the app (repeatable); only its key is printed",
    )
    deploy.add_argument(
        "--env-file",
        action="append",
        default=[],
        type=Path,
        metavar="PATH",
        help="runtime variables from a .env file (repeatable; --env overrides)",
    )
    deploy.add_argument(
        "--build-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a build-time variable (repeatable)",
    )

    redeploy = command("redeploy", "deploy DIR into a project this wallet owns", _redeploy)
    redeploy.add_argument("project_id", metavar="PROJECT_ID")
    redeploy.add_argument("directory", metavar="DIR", type=Path)
    _payment_options(redeploy)
    for option in ("--env", "--env-file", "--build-env"):
        # Not taken (REDEPLOY_KEEPS_ENV), but named: argparse's own "unrecognized arguments"
        # error would print the value.
        redeploy.add_argument(option, action="append", default=[], help=argparse.SUPPRESS)

    command("projects", "list this wallet's projects", _projects)

    status = command("status", "a deployment's status", _status)
    status.add_argument("project_id", metavar="PROJECT_ID")
    status.add_argument("deployment_id", metavar="DEPLOYMENT_ID")
    status.add_argument("--wait", action="store_true", help="poll until ready or failed")

    logs = command("logs", "a deployment's build (default) or runtime logs", _logs)
    logs.add_argument("project_id", metavar="PROJECT_ID")
    logs.add_argument("deployment_id", metavar="DEPLOYMENT_ID")
    logs.add_argument("--runtime", action="store_true", help="runtime logs instead of build logs")
    logs.add_argument("--since", type=int, default=60, help="runtime logs of the last N seconds")

    delete = command("delete", "delete a project (its credits stop burning)", _delete)
    delete.add_argument("project_id", metavar="PROJECT_ID")

    command("balance", "this wallet's credits at the gateway: balance, burn, runway", _balance)

    topup = command("topup", "pay AMOUNT_USD and credit it without deploying", _topup)
    topup.add_argument("amount_usd", metavar="AMOUNT_USD", type=_usd_argument)
    topup.add_argument("--chain", help="payment chain (default: the gateway's default)")
    topup.add_argument("--token", help="payment token (usdc or usdt; default usdc)")
    topup.add_argument("--max-usd", type=_usd_argument, help="spend cap (default $AGENT_MAX_USD)")
    _pay_option(topup)


def _pay_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pay",
        choices=PAY_MODES,
        default="auto",
        help="gasless: sign a USDC authorization the gateway settles (no ETH needed); "
        "transfer: send the token yourself; auto (default): gasless when offered",
    )


def _payment_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--months", type=int, default=1, help="months paid for (default 1)")
    parser.add_argument("--chain", help="payment chain: arbitrum or base (default: the gateway's)")
    parser.add_argument("--token", help="payment token: usdc or usdt (default usdc)")
    parser.add_argument(
        "--max-usd",
        type=_usd_argument,
        help="refuse to pay more than this in all for the command (default 5)",
    )
    parser.add_argument(
        "--use-credits",
        action="store_true",
        help="deploy on existing credits even when other live projects depend on them",
    )
    _pay_option(parser)


def _usd_argument(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not an amount in USD: {text!r}") from None
    if not value.is_finite() or value < 0:
        raise argparse.ArgumentTypeError(f"not an amount in USD: {text!r}")
    return value


# --- running a command ----------------------------------------------------------------------


class Output:
    """Where a command writes: progress lines on stderr, the result on stdout."""

    def __init__(self, as_json: bool, out: TextIO = sys.stdout, err: TextIO = sys.stderr):
        self.as_json = as_json
        self.out = out
        self.err = err

    def progress(self, progress: Progress) -> None:
        print(format_progress(progress), file=self.err, flush=True)

    def note(self, text: str) -> None:
        print(text, file=self.err, flush=True)

    def result(self, human: str, machine: Any) -> None:
        if self.as_json:
            print(json.dumps(_plain(machine), indent=None, default=str), file=self.out)
        else:
            print(human, file=self.out)
        self.out.flush()


STAGE_LABELS = {
    "quote": "quote",
    "paying": "payment",
    "sent": "payment",
    "confirmed": "confirmation",
    "submitting": "payment",
    "pending": "confirmation",
    "credits": "credits",
    "retrying": "retry",
    "started": "deploy",
    "building": "build",
    "ready": "ready",
    "failed": "failed",
}


def format_progress(progress: Progress) -> str:
    return f"[{STAGE_LABELS.get(progress.stage, progress.stage):>12}] {progress.message}"


def quiet_client_libraries() -> None:
    """httpx and web3 log every request at INFO; the progress lines say what matters."""
    for name in ("httpx", "web3"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _run(
    run: Callable[[argparse.Namespace, Output, Mapping[str, str]], Coroutine[Any, Any, int]],
    args: argparse.Namespace,
    *,
    environ: Mapping[str, str],
) -> int:
    output = Output(args.json)
    quiet_client_libraries()
    try:
        return asyncio.run(run(args, output, environ))
    except UsageError as exc:
        return _fail(output, exc, ExitCode.USAGE)
    except SpendCapExceeded as exc:
        return _fail(output, exc, ExitCode.PAYMENT_REFUSED)
    except CreditsCoverQuote as exc:
        advice = f"{exc.summary}. Rerun with --use-credits to deploy on the credits"
        return _fail(output, exc, ExitCode.PAYMENT_REFUSED, advice)
    except AskedToPayAgain as exc:
        return _fail(output, exc, ExitCode.FAILED, tx=exc.tx)
    except BuildFailed as exc:
        return _fail(output, exc, ExitCode.BUILD_FAILED, status=exc.status)
    except PaymentRejected as exc:
        return _fail(output, exc, ExitCode.FAILED, tx=exc.tx, reason=exc.reason)
    except ClientError as exc:
        return _fail(output, exc, ExitCode.FAILED)


def _fail(
    output: Output, exc: Exception, code: ExitCode, message: str | None = None, **extra: Any
) -> int:
    """Print ``message`` (default: the error's own) and return ``code``."""
    text = str(exc) if message is None else message
    if output.as_json:
        body = {"error": text, "kind": type(exc).__name__, "exit_code": int(code), **extra}
        output.result("", body)
    else:
        print(f"error: {text}", file=output.err)
    return int(code)


def _client(args: argparse.Namespace, output: Output, environ: Mapping[str, str]) -> AgentClient:
    try:
        agent_env = read_agent_environment(environ)
    except AgentEnvironmentError as exc:
        raise UsageError(str(exc)) from None
    return agent_env.client(
        max_usd=getattr(args, "max_usd", None),
        on_progress=output.progress,
        pay_with=getattr(args, "pay", "auto"),
    )


def _bundle_upload(directory: Path, output: Output) -> dict[str, Any]:
    try:
        bundle = collect(directory)
    except BundleError as exc:
        raise UsageError(str(exc)) from None
    output.note(f"[{'bundle':>12}] {len(bundle.files)} files, {bundle.total_bytes} bytes")
    if bundle.skipped_secrets:
        output.note(f"[{'bundle':>12}] left out secrets: {', '.join(bundle.skipped_secrets)}")
    if bundle.skipped_other:
        output.note(f"[{'bundle':>12}] left out: {', '.join(bundle.skipped_other)}")
    return bundle.upload()


def _app_env(args: argparse.Namespace, output: Output) -> dict[str, Any] | None:
    """The deploy's ``settings`` with the app's variables (keys shown, values never)."""
    try:
        app_env = collect_env(args.env_file, args.env, args.build_env)
    except EnvError as exc:
        raise UsageError(str(exc)) from None
    if not app_env.settings():
        return None
    output.note(f"[{'env':>12}] {app_env.describe()}")
    return app_env.settings()


async def _deploy(args: argparse.Namespace, output: Output, environ: Mapping[str, str]) -> int:
    upload = _bundle_upload(args.directory, output)
    settings = _app_env(args, output)
    async with _client(args, output, environ) as client:
        options = {
            "settings": settings,
            "name": args.name,
            "display_name": args.display_name,
            "months": args.months,
            "chain": args.chain,
            "token": args.token,
            "use_existing_credits": args.use_credits,
        }
        if args.no_wait:
            started = await client.start_deploy(upload, **options)
            output.result(
                f"deploying: project {started.project_id}, deployment {started.deployment_id}",
                started,
            )
            return ExitCode.OK
        deployment = await client.deploy(upload, **options)
    output.result(
        f"ready: {deployment.url}\nproject {deployment.started.project_id}, "
        f"deployment {deployment.started.deployment_id}",
        {"url": deployment.url, **_plain(deployment)},
    )
    return ExitCode.OK


REDEPLOY_KEEPS_ENV = (
    "redeploy takes no --env, --env-file or --build-env: a redeploy keeps the environment "
    "variables of the project's first deploy, because CreateOS takes them only when a project "
    "is created (delete the project and deploy again to change them)"
)


async def _redeploy(args: argparse.Namespace, output: Output, environ: Mapping[str, str]) -> int:
    if args.env or args.env_file or args.build_env:
        raise UsageError(REDEPLOY_KEEPS_ENV)
    upload = _bundle_upload(args.directory, output)
    async with _client(args, output, environ) as client:
        deployment = await client.redeploy(
            args.project_id,
            upload,
            months=args.months,
            chain=args.chain,
            token=args.token,
            use_existing_credits=args.use_credits,
        )
    output.result(f"ready: {deployment.url}", {"url": deployment.url, **_plain(deployment)})
    return ExitCode.OK


async def _projects(args: argparse.Namespace, output: Output, environ: Mapping[str, str]) -> int:
    async with _client(args, output, environ) as client:
        projects = await client.projects()
    lines = [f"{p.id}  {p.name:<32} {p.status:<10} {p.url or '-'}" for p in projects]
    output.result("\n".join(lines) or "no projects", {"projects": projects})
    return ExitCode.OK


async def _status(args: argparse.Namespace, output: Output, environ: Mapping[str, str]) -> int:
    async with _client(args, output, environ) as client:
        if args.wait:
            status = await client.wait_until_finished(args.project_id, args.deployment_id)
        else:
            status = await client.status(args.project_id, args.deployment_id)
    detail = status.endpoint or status.message or status.reason or ""
    output.result(f"{status.status} ({status.deployment_status or '-'}) {detail}", status)
    if status.status == "failed":
        return ExitCode.BUILD_FAILED
    return ExitCode.OK


async def _logs(args: argparse.Namespace, output: Output, environ: Mapping[str, str]) -> int:
    async with _client(args, output, environ) as client:
        logs = await client.logs(
            args.project_id,
            args.deployment_id,
            kind="runtime" if args.runtime else "build",
            since_seconds=args.since,
        )
    text = logs.text if logs.kind == "runtime" else "\n".join(line.text for line in logs.lines)
    output.result(text, logs)
    return ExitCode.OK


async def _delete(args: argparse.Namespace, output: Output, environ: Mapping[str, str]) -> int:
    async with _client(args, output, environ) as client:
        await client.delete(args.project_id)
    output.result(f"deleted {args.project_id}", {"projectId": args.project_id, "status": "deleted"})
    return ExitCode.OK


async def _balance(args: argparse.Namespace, output: Output, environ: Mapping[str, str]) -> int:
    async with _client(args, output, environ) as client:
        credits = await client.credits()
    runway = "-" if credits.runway_hours is None else f"{credits.runway_hours} h"
    output.result(
        f"{credits.wallet}: {credits.balance_usd} USD ({credits.credits} credits), "
        f"{credits.active_projects} active projects, burn {credits.burn_usd_per_hour} USD/h, "
        f"runway {runway}",
        credits,
    )
    return ExitCode.OK


async def _topup(args: argparse.Namespace, output: Output, environ: Mapping[str, str]) -> int:
    async with _client(args, output, environ) as client:
        topped = await client.top_up(args.amount_usd, chain=args.chain, token=args.token)
    earlier = " (by an earlier attempt)" if topped.credited_earlier else ""
    output.result(
        f"credited {topped.credited_usd} USD{earlier}; balance {topped.balance_usd} USD", topped
    )
    return ExitCode.OK


def _plain(value: Any) -> Any:
    """Dataclasses (nested, in lists) as JSON-ready dicts; Decimal as a string via default."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
