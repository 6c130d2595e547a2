"""``python -m gateway mcp``: the agent client as MCP tools on stdio (the official ``mcp`` SDK).

Tools: ``deploy``, ``redeploy``, ``deployment_status``, ``deployment_logs``, ``list_projects``,
``delete_project``, ``credits``, ``topup``. Each takes a JSON-schema input and returns a
structured result (the models below); the wallet, gateway and caps come from the same
environment as the CLI (``gateway.client.environment``).

Contracts:
- **Spend caps.** One tool call pays at most ``AGENT_MAX_USD`` (a call's ``max_usd`` may lower
  it, never raise it); one server session pays at most ``AGENT_MAX_USD_SESSION`` in all. A call
  whose payment would go above either is a tool error naming the amount and the cap, and pays
  nothing. The paying part of calls (up to the deployment's start) runs one at a time, so two
  concurrent calls cannot both spend the session's last dollars; builds are awaited outside it.
  A payment counts against the session from the moment the client starts it (its ``paying``
  step), and is given back only when the wallet could not send it (no funds, no RPC).
- **Failures are tool errors** (``is_error``) carrying the gateway's reason, never a crash: a
  malformed environment, an unreachable gateway, a refusal, a failed build. The server keeps
  serving after any of them.
- **The key never shows**: no tool result, progress message, error or log line holds the private
  key; every text leaving a tool is scrubbed of it as a last guard, and ``run`` hands it to the
  process's log redactor.
- **Progress**: every step the client reports (quote, payment, confirmation, build states,
  ready) is an MCP progress notification of the call, sent in order before its result.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import inspect
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from gateway.client.agent import AgentClient
from gateway.client.bundle import Bundle, BundleError, collect, is_secret
from gateway.client.cli import STAGE_LABELS, quiet_client_libraries
from gateway.client.environment import (
    AgentEnvironment,
    AgentEnvironmentError,
    read_agent_environment,
)
from gateway.client.envvars import AppEnv, EnvError, collect_env
from gateway.client.errors import (
    BuildFailed,
    ClientError,
    GatewayRefused,
    InsufficientFunds,
    NoRpcForChain,
    SpendCapExceeded,
)
from gateway.client.models import (
    Deployment,
    DeploymentStatus,
    DeployStarted,
    Payment,
    Progress,
    Quote,
)

log = logging.getLogger(__name__)
_T = TypeVar("_T")
ToolContext = Context[Any, Any]
REDACTED = "[redacted]"
REDEPLOY_KEEPS_ENV = (
    "a redeploy keeps the environment variables of the project's first deploy: CreateOS takes "
    "them only when a project is created (delete the project and deploy again to change them)"
)


# --- results (the tools' output schemas) ----------------------------------------------------


class Status(BaseModel):
    status: str = Field(description="ready, deploying or failed")
    deployment_id: str
    endpoint: str | None = Field(None, description="the live URL once ready")
    deployment_status: str | None = Field(None, description="CreateOS's own state")
    message: str | None = None
    reason: str | None = Field(None, description="why it failed (last build-log lines)")

    @classmethod
    def of(cls, status: DeploymentStatus) -> Status:
        return cls(
            status=status.status,
            deployment_id=status.deployment_id,
            endpoint=status.endpoint,
            deployment_status=status.deployment_status,
            message=status.message,
            reason=status.reason,
        )


class PaymentMade(BaseModel):
    chain: str
    token: str
    tx: str | None = Field(description="the transfer, or the gasless payment's settlement tx")
    amount_token: int = Field(description="base units of the token")
    gasless: bool = Field(description="paid by a signed authorization the gateway settled")
    receipt: dict[str, Any] | None = Field(
        None, description="the gateway's signed receipt of the credit (verified)"
    )

    @classmethod
    def of(cls, payment: Payment) -> PaymentMade:
        return cls(
            chain=payment.chain,
            token=payment.token,
            tx=payment.tx_hash or None,
            amount_token=payment.amount_token,
            gasless=payment.credential is not None,
            receipt=payment.receipt,
        )


class DeployResult(BaseModel):
    project_id: str
    deployment_id: str
    url: str | None = Field(None, description="the live URL (None when wait is false)")
    status: Status | None = Field(None, description="the final status (None when wait is false)")
    payment: PaymentMade | None = Field(None, description="the transfer this call paid, if any")
    files: int = Field(description="files uploaded")
    left_out_secrets: list[str] = Field(description="secret files not uploaded")
    env_keys: list[str] = Field(description="runEnvs keys sent (values are never shown)")
    build_env_keys: list[str] = Field(description="buildVars keys sent")
    session_spent_usd: str = Field(description="what this server session has paid so far")


class LogLine(BaseModel):
    line_number: int
    text: str
    stage: str | None = None


class LogsResult(BaseModel):
    kind: Literal["build", "runtime"]
    deployment_id: str
    lines: list[LogLine] = Field(description="build log lines (kind build)")
    text: str = Field(description="runtime log text (kind runtime)")


class ProjectEntry(BaseModel):
    id: str
    name: str
    display_name: str
    status: str
    url: str | None = None
    created_at: str | None = None


class ProjectsResult(BaseModel):
    projects: list[ProjectEntry]


class Deleted(BaseModel):
    project_id: str
    status: Literal["deleted"] = "deleted"


class CreditsResult(BaseModel):
    wallet: str
    balance_usd: str
    credits: str
    active_projects: int
    burn_usd_per_hour: str
    runway_hours: str | None = Field(None, description="None when nothing burns")
    call_cap_usd: str = Field(description="the most one tool call pays (AGENT_MAX_USD)")
    session_cap_usd: str = Field(description="the most this session pays (AGENT_MAX_USD_SESSION)")
    session_spent_usd: str = Field(description="what this server session has paid so far")


class TopUpResult(BaseModel):
    payment: PaymentMade
    credited_usd: str
    balance_usd: str
    credited_earlier: bool = Field(description="an earlier, interrupted attempt had credited it")
    session_spent_usd: str


class InlineFile(BaseModel):
    path: str = Field(description="relative path with forward slashes, e.g. src/index.js")
    content: str = Field(description="the file's text, or its bytes in base64 (see base64)")
    base64: bool = Field(False, description="content is base64 (for binary files)")


# --- inputs shared by several tools ---------------------------------------------------------

ProjectId = Annotated[str, Field(description="the project's id (from deploy or list_projects)")]
DeploymentId = Annotated[str, Field(description="the deployment's id (from deploy or redeploy)")]
Directory = Annotated[
    str | None,
    Field(
        description="a directory on this machine to upload, best an absolute path (secret "
        "files such as .env and keys are left out)"
    ),
]
Files = Annotated[
    list[InlineFile] | None,
    Field(description="the app's files inline, instead of directory"),
]
Months = Annotated[int, Field(ge=1, le=24, description="months of hosting paid for")]
Chain = Annotated[str | None, Field(description="payment chain: arbitrum or base")]
Token = Annotated[str | None, Field(description="payment token: usdc or usdt (default usdc)")]
UseCredits = Annotated[
    bool,
    Field(description="deploy on existing credits even when other live projects share them"),
]
MaxUsd = Annotated[
    Decimal | None,
    Field(ge=0, description="this call's spend cap in USD; at most AGENT_MAX_USD"),
]
Wait = Annotated[bool, Field(description="wait until ready (or failed) before answering")]
Pay = Annotated[
    Literal["auto", "gasless", "transfer"],
    Field(
        description="gasless: sign a USDC authorization the gateway settles (no ETH needed); "
        "transfer: send the token from this wallet; auto: gasless when the gateway offers it"
    ),
]


class _ProgressRelay:
    """The client's progress callback (sync) to the call's MCP progress notifications (async),
    in order, through one queue and one sending task."""

    def __init__(self, ctx: ToolContext, scrub: Callable[[str], str]) -> None:
        self._ctx = ctx
        self._scrub = scrub
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._sender = asyncio.create_task(self._send())

    def note(self, stage: str, message: str) -> None:
        self._queue.put_nowait(self._scrub(f"{STAGE_LABELS.get(stage, stage)}: {message}"))

    async def _send(self) -> None:
        step = 0
        while (text := await self._queue.get()) is not None:
            step += 1
            try:
                await self._ctx.report_progress(step, None, text)
            except Exception:  # a gone client must not fail the call
                log.warning("progress notification not sent", exc_info=True)

    async def close(self) -> None:
        """Send what is queued, then stop (at once when the call itself was cancelled)."""
        self._queue.put_nowait(None)
        try:
            await self._sender
        finally:
            self._sender.cancel()


class _Call:
    """One tool call: its client (with the call's progress) and its share of the session."""

    def __init__(self, tools: AgentTools, env: AgentEnvironment, relay: _ProgressRelay) -> None:
        self.tools = tools
        self.relay = relay
        self.client: AgentClient = env.client(max_usd=Decimal(0), on_progress=self._progress)
        self.last_payment_usd = Decimal(0)

    def _progress(self, progress: Progress) -> None:
        if progress.stage == "paying" and progress.quote is not None:
            self.last_payment_usd = _asked(progress.quote)
            self.tools.spent_usd += self.last_payment_usd
        self.relay.note(progress.stage, progress.message)


def _usd(amount: Decimal) -> str:
    """An amount as plain decimal text without trailing zeros: 1, 0.5, 0.25."""
    return f"{amount.normalize():f}"


def _asked(quote: Quote) -> Decimal:
    """What a quote's payment counts against a cap: the client's own measure."""
    return max(quote.amount_usd, quote.token_amount_usd)


class AgentTools:
    """The tools' logic over ``AgentClient``. ``environment`` None: the environment was bad
    (``setup_error`` says why); every tool then answers that error."""

    def __init__(self, environment: AgentEnvironment | None, setup_error: str = "") -> None:
        self._env = environment
        self._setup_error = setup_error
        self._secrets: tuple[str, ...] = ()
        self._secret_re: re.Pattern[str] | None = None
        if environment is not None:
            key = environment.private_key_hex
            self._secrets = (key.lower(), key.upper())
            self._secret_re = re.compile(re.escape(key), re.IGNORECASE)
        self.spent_usd = Decimal(0)
        self._paying = asyncio.Lock()

    @property
    def secrets(self) -> tuple[str, ...]:
        """The forms of the private key that must never be shown."""
        return self._secrets

    def scrub(self, text: str) -> str:
        """``text`` without the private key, in any letter case."""
        return text if self._secret_re is None else self._secret_re.sub(REDACTED, text)

    @asynccontextmanager
    async def _call(self, ctx: ToolContext) -> AsyncIterator[_Call]:
        """A call whose every failure leaves as a ``ToolError`` with a key-free message."""
        self._refuse_unknown_arguments(ctx)
        if self._env is None:
            raise ToolError(self._setup_error)
        relay = _ProgressRelay(ctx, self.scrub)
        call = _Call(self, self._env, relay)
        try:
            yield call
        except ToolError as exc:
            raise ToolError(self.scrub(str(exc))) from None
        except BuildFailed as exc:
            status = exc.status
            raise ToolError(
                self.scrub(
                    f"the build failed: deployment {status.deployment_id} ended "
                    f"{status.deployment_status}: {status.reason}"
                )
            ) from None
        except GatewayRefused as exc:
            detail = f" ({exc.code})" if exc.code else ""
            hint = exc.fields.get("hint")
            tail = f"; {hint}" if isinstance(hint, str) else ""
            raise ToolError(
                self.scrub(f"the gateway refused: HTTP {exc.status}{detail}: {exc.message}{tail}")
            ) from None
        except (ClientError, BundleError, EnvError) as exc:
            raise ToolError(self.scrub(str(exc))) from None
        except Exception as exc:
            log.error("tool call failed unexpectedly: %s", type(exc).__name__, exc_info=True)
            raise ToolError(self.scrub(f"unexpected {type(exc).__name__}: {exc}")) from None
        finally:
            try:
                await call.client.aclose()
            finally:
                await relay.close()

    def _refuse_unknown_arguments(self, ctx: ToolContext) -> None:
        """An argument the tool does not take is an error, not silently dropped (the SDK drops
        them): an agent that sends ``env`` to ``redeploy`` must learn it had no effect."""
        params = ctx.request_context.params or {}
        tool, arguments = params.get("name"), params.get("arguments") or {}
        method = getattr(self, str(tool), None) if tool in TOOL_ANNOTATIONS else None
        if method is None or not isinstance(arguments, Mapping):
            return
        unknown = sorted(set(arguments) - set(inspect.signature(method).parameters))
        if not unknown:
            return
        names = ", ".join(str(name)[:64] for name in unknown)
        hint = ""
        if tool == "redeploy" and {"env", "env_file", "build_env"} & set(unknown):
            hint = f"; {REDEPLOY_KEEPS_ENV}"
        raise ToolError(f"{tool} takes no argument {names}{hint}")

    async def _pay(
        self, call: _Call, max_usd: Decimal | None, pay: str, act: Callable[[], Awaitable[_T]]
    ) -> _T:
        """Run the paying part of a call under both caps, one call at a time."""
        assert self._env is not None
        call.client.pay_with = pay
        call_cap = self._env.max_usd if max_usd is None else min(max_usd, self._env.max_usd)
        async with self._paying:
            session_left = max(self._env.session_max_usd - self.spent_usd, Decimal(0))
            call.client.max_usd = min(call_cap, session_left)
            try:
                return await act()
            except SpendCapExceeded as exc:
                raise ToolError(self._cap_message(exc, call_cap, session_left)) from None
            except (InsufficientFunds, NoRpcForChain):
                self.spent_usd -= call.last_payment_usd  # never sent
                raise

    def _cap_message(self, exc: SpendCapExceeded, call_cap: Decimal, session_left: Decimal) -> str:
        assert self._env is not None
        nothing = "nothing more was paid" if exc.paid_usd else "nothing was paid"
        paid = f" after this call paid {_usd(exc.paid_usd)} USD" if exc.paid_usd else ""
        asked = f"paying {_usd(exc.asked_usd)} USD{paid}"
        if session_left < call_cap:
            return (
                f"{asked} would go above this MCP session's spend cap: "
                f"{_usd(self.spent_usd - exc.paid_usd)} USD of its "
                f"{_usd(self._env.session_max_usd)} USD (AGENT_MAX_USD_SESSION) were already "
                f"paid, {_usd(session_left)} USD are left; {nothing}"
            )
        return (
            f"{asked} would go above the spend cap of one call, {_usd(call_cap)} USD "
            f"(AGENT_MAX_USD or the call's max_usd); {nothing}"
        )

    def _spent(self) -> str:
        return _usd(self.spent_usd)

    # --- tools ------------------------------------------------------------------------------

    async def deploy(
        self,
        ctx: ToolContext,
        name: Annotated[str, Field(description="unique project name: 4-32 of a-z, 0-9 and -")],
        directory: Directory = None,
        files: Files = None,
        months: Months = 1,
        display_name: Annotated[str | None, Field(description="default: the name")] = None,
        env: Annotated[
            dict[str, str] | None,
            Field(description="the app's runtime environment variables (settings.runEnvs)"),
        ] = None,
        env_file: Annotated[
            str | None,
            Field(description="a .env file on this machine read into env (env overrides it)"),
        ] = None,
        build_env: Annotated[
            dict[str, str] | None,
            Field(description="build-time variables (settings.buildVars)"),
        ] = None,
        chain: Chain = None,
        token: Token = None,
        use_existing_credits: UseCredits = False,
        wait: Wait = True,
        max_usd: MaxUsd = None,
        pay: Pay = "auto",
    ) -> DeployResult:
        """Deploy an app as a new project: pays the gateway's quote (within the spend caps),
        uploads, and waits until it is live, returning its URL. Progress notifications follow
        each step. Give either directory or files."""
        async with self._call(ctx) as call:
            bundle = _bundle(directory, files)
            app_env = _app_env(env, env_file, build_env)
            _note_bundle(call.relay, bundle, app_env)
            started = await self._pay(
                call,
                max_usd,
                pay,
                lambda: call.client.start_deploy(
                    bundle.upload(),
                    name=name,
                    display_name=display_name,
                    months=months,
                    chain=chain,
                    token=token,
                    settings=app_env.settings() or None,
                    use_existing_credits=use_existing_credits,
                ),
            )
            return await self._finish(call, started, bundle, app_env, wait)

    async def redeploy(
        self,
        ctx: ToolContext,
        project_id: ProjectId,
        directory: Directory = None,
        files: Files = None,
        months: Months = 1,
        chain: Chain = None,
        token: Token = None,
        use_existing_credits: UseCredits = False,
        wait: Wait = True,
        max_usd: MaxUsd = None,
        pay: Pay = "auto",
    ) -> DeployResult:
        """Deploy new code into a project this wallet owns, paid like a deploy. It takes no
        env, env_file or build_env: the project keeps the environment variables of its first
        deploy (CreateOS takes them only when a project is created)."""
        async with self._call(ctx) as call:
            bundle = _bundle(directory, files)
            _note_bundle(call.relay, bundle, AppEnv())
            started = await self._pay(
                call,
                max_usd,
                pay,
                lambda: call.client.start_redeploy(
                    project_id,
                    bundle.upload(),
                    months=months,
                    chain=chain,
                    token=token,
                    use_existing_credits=use_existing_credits,
                ),
            )
            return await self._finish(call, started, bundle, AppEnv(), wait)

    async def _finish(
        self, call: _Call, started: DeployStarted, bundle: Bundle, app_env: AppEnv, wait: bool
    ) -> DeployResult:
        status: DeploymentStatus | None = None
        if wait:
            status = await call.client.wait_until_finished(
                started.project_id, started.deployment_id
            )
        payment = started.payment
        return DeployResult(
            project_id=started.project_id,
            deployment_id=started.deployment_id,
            url=Deployment(started, status).url if status is not None else None,
            status=Status.of(status) if status is not None else None,
            payment=None if payment is None else PaymentMade.of(payment),
            files=len(bundle.files),
            left_out_secrets=bundle.skipped_secrets,
            env_keys=sorted(app_env.run),
            build_env_keys=sorted(app_env.build),
            session_spent_usd=self._spent(),
        )

    async def deployment_status(
        self,
        ctx: ToolContext,
        project_id: ProjectId,
        deployment_id: DeploymentId,
        wait: Annotated[bool, Field(description="poll until ready or failed")] = False,
    ) -> Status:
        """A deployment's status: ready (with its URL), deploying, or failed (with why)."""
        async with self._call(ctx) as call:
            if not wait:
                return Status.of(await call.client.status(project_id, deployment_id))
            try:
                return Status.of(await call.client.wait_until_finished(project_id, deployment_id))
            except BuildFailed as exc:  # a read: a failed deployment is its answer
                return Status.of(exc.status)

    async def deployment_logs(
        self,
        ctx: ToolContext,
        project_id: ProjectId,
        deployment_id: DeploymentId,
        kind: Annotated[
            Literal["build", "runtime"], Field(description="build log lines, or the app's output")
        ] = "build",
        since_seconds: Annotated[
            int, Field(ge=1, le=86_400, description="runtime logs of the last N seconds")
        ] = 60,
    ) -> LogsResult:
        """A deployment's build logs (default) or runtime logs."""
        async with self._call(ctx) as call:
            logs = await call.client.logs(
                project_id, deployment_id, kind=kind, since_seconds=since_seconds
            )
            return LogsResult(
                kind="runtime" if logs.kind == "runtime" else "build",
                deployment_id=logs.deployment_id,
                lines=[LogLine(line_number=x.line_number, text=x.text, stage=x.stage)
                       for x in logs.lines],
                text=logs.text,
            )  # fmt: skip

    async def list_projects(self, ctx: ToolContext) -> ProjectsResult:
        """This wallet's projects with their status and URL."""
        async with self._call(ctx) as call:
            projects = await call.client.projects()
            return ProjectsResult(
                projects=[
                    ProjectEntry(
                        id=p.id,
                        name=p.name,
                        display_name=p.display_name,
                        status=p.status,
                        url=p.url,
                        created_at=p.created_at,
                    )
                    for p in projects
                ]
            )

    async def delete_project(self, ctx: ToolContext, project_id: ProjectId) -> Deleted:
        """Delete a project of this wallet: it goes offline and stops drawing on the credits."""
        async with self._call(ctx) as call:
            await call.client.delete(project_id)
            return Deleted(project_id=project_id)

    async def credits(self, ctx: ToolContext) -> CreditsResult:
        """This wallet's credits at the gateway: balance, burn per hour and runway, and the
        spend caps with what this session has paid."""
        async with self._call(ctx) as call:
            credits = await call.client.credits()
            assert self._env is not None
            return CreditsResult(
                wallet=credits.wallet,
                balance_usd=str(credits.balance_usd),
                credits=str(credits.credits),
                active_projects=credits.active_projects,
                burn_usd_per_hour=str(credits.burn_usd_per_hour),
                runway_hours=None if credits.runway_hours is None else str(credits.runway_hours),
                call_cap_usd=str(self._env.max_usd),
                session_cap_usd=str(self._env.session_max_usd),
                session_spent_usd=self._spent(),
            )

    async def topup(
        self,
        ctx: ToolContext,
        amount_usd: Annotated[Decimal, Field(gt=0, description="USD to pay and credit")],
        chain: Chain = None,
        token: Token = None,
        max_usd: MaxUsd = None,
        pay: Pay = "auto",
    ) -> TopUpResult:
        """Pay amount_usd (within the spend caps) and credit it to this wallet, without
        deploying."""
        async with self._call(ctx) as call:
            topped = await self._pay(
                call, max_usd, pay, lambda: call.client.top_up(amount_usd, chain=chain, token=token)
            )
            payment = topped.payment
            return TopUpResult(
                payment=PaymentMade.of(payment),
                credited_usd=str(topped.credited_usd),
                balance_usd=str(topped.balance_usd),
                credited_earlier=topped.credited_earlier,
                session_spent_usd=self._spent(),
            )


def _bundle(directory: str | None, files: list[InlineFile] | None) -> Bundle:
    if (directory is None) == (files is None):
        raise ToolError("give either directory or files (not both)")
    if directory is not None:
        return collect(Path(directory).expanduser())
    bundle = Bundle()
    for entry in files or ():
        name = entry.path.rsplit("/", 1)[-1]
        if is_secret(name):
            bundle.skipped_secrets.append(entry.path)
            continue
        if entry.base64:
            try:
                data = base64.b64decode(entry.content, validate=True)
            except (binascii.Error, ValueError):
                raise ToolError(f"files: {entry.path} is not valid base64") from None
        else:
            data = entry.content.encode("utf-8")
        bundle.files[entry.path] = data
    if not bundle.files:
        raise ToolError("files: nothing to deploy")
    return bundle


def _app_env(
    env: Mapping[str, str] | None, env_file: str | None, build_env: Mapping[str, str] | None
) -> AppEnv:
    """The app's variables, checked like the CLI's (errors name keys, never values)."""
    files = [Path(env_file).expanduser()] if env_file else []
    pairs = [f"{k}={v}" for k, v in (env or {}).items()]
    build_pairs = [f"{k}={v}" for k, v in (build_env or {}).items()]
    for name in (*(env or {}), *(build_env or {})):
        if "=" in name:
            raise EnvError(f"env: {name.split('=', 1)[0][:64]!r}... is not a variable name")
    return collect_env(files, pairs, build_pairs)


def _note_bundle(relay: _ProgressRelay, bundle: Bundle, app_env: AppEnv) -> None:
    relay.note("bundle", f"{len(bundle.files)} files, {bundle.total_bytes} bytes")
    if bundle.skipped_secrets:
        relay.note("bundle", f"left out secrets: {', '.join(bundle.skipped_secrets)}")
    if app_env.settings():
        relay.note("env", app_env.describe())


TOOL_ANNOTATIONS = {
    "deploy": ToolAnnotations(read_only_hint=False, destructive_hint=False),
    "redeploy": ToolAnnotations(read_only_hint=False, destructive_hint=True),
    "deployment_status": ToolAnnotations(read_only_hint=True),
    "deployment_logs": ToolAnnotations(read_only_hint=True),
    "list_projects": ToolAnnotations(read_only_hint=True),
    "delete_project": ToolAnnotations(read_only_hint=False, destructive_hint=True),
    "credits": ToolAnnotations(read_only_hint=True),
    "topup": ToolAnnotations(read_only_hint=False, destructive_hint=False),
}


def build_server(tools: AgentTools) -> MCPServer[Any]:
    server: MCPServer[Any] = MCPServer(
        name="agent-deploy-gateway",
        instructions=(
            "Deploy apps through a payment-gated gateway to CreateOS. deploy pays the quote "
            "from this wallet within the spend caps (see credits) and returns the live URL."
        ),
    )
    for name, hints in TOOL_ANNOTATIONS.items():
        server.add_tool(getattr(tools, name), name=name, annotations=hints)
    return server


def run(environ: Mapping[str, str], never_log: Callable[[str], None]) -> int:
    """Serve on stdio until the client closes it. ``never_log`` receives every form of the
    private key (and the raw variable) for the process's log redactor."""
    never_log(environ.get("AGENT_PRIVATE_KEY", "").strip())
    quiet_client_libraries()
    try:
        environment: AgentEnvironment | None = read_agent_environment(environ)
        error = ""
    except AgentEnvironmentError as exc:
        environment, error = None, str(exc)
        log.warning("every tool will answer: %s", error)
    tools = AgentTools(environment, error)
    for secret in tools.secrets:
        never_log(secret)
    build_server(tools).run("stdio")
    return 0
