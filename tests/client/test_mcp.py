"""``python -m gateway mcp`` as a subprocess, driven by the MCP SDK's own stdio client against
the local stack (tests/client/conftest.py): the tools, a deploy to ready with its progress, the
reads, delete; the spend caps (per call and per session) refusing with nothing paid; a bad key,
an unreachable gateway, another wallet's project and a failed build as tool errors after which
the server keeps serving; the private key in no output, progress message or log line."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.types import CallToolResult, TextContent

from devstack.gateway_process import GatewayProcess
from gateway.client.environment import read_agent_environment
from gateway.client.mcp_server import AgentTools
from gateway.config import PROJECT_ROOT
from tests.client import test_gasless
from tests.client.conftest import ARBITRUM_USDC, LocalStack
from tests.client.test_cli import cli_env, make_app

#: A second gateway process with a settler (tests/client/test_gasless.py).
gasless = test_gasless.gasless

TOOLS = {
    "deploy",
    "redeploy",
    "deployment_status",
    "deployment_logs",
    "list_projects",
    "delete_project",
    "credits",
    "topup",
}


def mcp_env(
    stack: LocalStack, agent: LocalAccount, state_dir: Path, **extra: str
) -> dict[str, str]:
    env = {
        k: v
        for k, v in cli_env(stack, agent, state_dir).items()
        if k.startswith(("AGENT_", "GATEWAY_"))
    }
    env.update(extra)
    return env


class Recorder:
    """Every text the server sent back: results, errors, progress messages."""

    def __init__(self, session: ClientSession) -> None:
        self.session = session
        self.texts: list[str] = []

    async def call(
        self, tool: str, arguments: dict[str, Any] | None = None, progress: list[str] | None = None
    ) -> CallToolResult:
        async def on_progress(done: float, total: float | None, message: str | None) -> None:
            if progress is not None and message is not None:
                progress.append(message)
            self.texts.append(message or "")

        result = await self.session.call_tool(tool, arguments or {}, progress_callback=on_progress)
        self.texts += [c.text for c in result.content if isinstance(c, TextContent)]
        self.texts.append(json.dumps(result.structured_content))
        return result

    async def ok(self, tool: str, arguments: dict[str, Any] | None = None, **kw: Any) -> Any:
        result = await self.call(tool, arguments, **kw)
        assert not result.is_error, error_text(result)
        return result.structured_content

    async def error(self, tool: str, arguments: dict[str, Any] | None = None) -> str:
        result = await self.call(tool, arguments)
        assert result.is_error, result.structured_content
        return error_text(result)


def error_text(result: CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, TextContent))


@asynccontextmanager
async def mcp_server(
    env: dict[str, str], errlog: Path, python: Path | str = sys.executable, cwd: Path = PROJECT_ROOT
) -> AsyncIterator[Recorder]:
    """``python -m gateway mcp`` with ``env``, its stderr appended to ``errlog``."""
    params = StdioServerParameters(
        command=str(python), args=["-m", "gateway", "mcp"], env=env, cwd=cwd
    )
    with errlog.open("a", encoding="utf-8") as log:
        async with (
            stdio_client(params, errlog=log) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield Recorder(session)


def key_forms(agent: LocalAccount) -> list[str]:
    key = bytes(agent.key).hex()
    return [key, key.upper(), key[:32], key[32:]]


def assert_key_absent(agent: LocalAccount, *texts: str) -> None:
    for text in texts:
        for form in key_forms(agent):
            assert form not in text


async def test_tools_deploy_reads_delete_and_a_failed_build(
    local_stack: LocalStack, tmp_path: Path
) -> None:
    agent = local_stack.funded_agent()
    errlog = tmp_path / "mcp.log"
    name = f"mcp-{uuid.uuid4().hex[:8]}"
    before = local_stack.arbitrum.balance_of(ARBITRUM_USDC, agent.address)
    async with mcp_server(mcp_env(local_stack, agent, tmp_path / "state"), errlog) as server:
        listed = (await server.session.list_tools()).tools
        assert {t.name for t in listed} == TOOLS
        assert all(t.output_schema for t in listed)
        deploy_schema = next(t for t in listed if t.name == "deploy").input_schema
        assert {"name", "directory", "files", "months", "env", "env_file", "build_env"} <= set(
            deploy_schema["properties"]
        )
        assert deploy_schema["required"] == ["name"]

        progress: list[str] = []
        secret_run, secret_file, secret_build = (f"s3cr3t-{uuid.uuid4().hex}" for _ in range(3))
        env_file = tmp_path / "app.env"
        env_file.write_text(f"DB_PASSWORD={secret_file}\n", encoding="utf-8")
        deployed = await server.ok(
            "deploy",
            {
                "directory": str(make_app(tmp_path / "app")),
                "name": name,
                # Two months: the later deploys on credits still find 0.50 USD after the
                # metering loop burns an hour, whenever its tick falls during the test.
                "months": 2,
                "env": {"API_TOKEN": secret_run},
                "env_file": str(env_file),
                "build_env": {"NPM_TOKEN": secret_build},
            },
            progress=progress,
        )
        assert deployed["url"].startswith(f"https://{name}-")
        assert deployed["status"]["status"] == "ready"
        assert deployed["env_keys"] == ["API_TOKEN", "DB_PASSWORD"]
        assert deployed["build_env_keys"] == ["NPM_TOKEN"]
        [create] = [
            r for r in local_stack.simulator.requests
            if r.method == "POST" and r.path == "/v1/projects" and r.json
            and r.json.get("uniqueName") == name
        ]  # fmt: skip
        assert create.json is not None
        assert create.json["settings"]["runEnvs"] == {
            "API_TOKEN": secret_run,
            "DB_PASSWORD": secret_file,
        }
        assert create.json["settings"]["buildVars"] == {"NPM_TOKEN": secret_build}
        assert ".env" in deployed["left_out_secrets"]
        assert deployed["payment"]["chain"] == "arbitrum" and deployed["payment"]["tx"]
        assert deployed["payment"]["gasless"] is False  # this gateway has no settler
        for step in ("quote:", "payment:", "confirmation:", "build:", "ready:"):
            assert any(m.startswith(step) for m in progress), (step, progress)
        assert local_stack.arbitrum.balance_of(ARBITRUM_USDC, agent.address) == before - 1_000_000

        project, deployment = deployed["project_id"], deployed["deployment_id"]
        status = await server.ok(
            "deployment_status", {"project_id": project, "deployment_id": deployment}
        )
        assert status["status"] == "ready" and status["endpoint"] == deployed["url"]
        logs = await server.ok(
            "deployment_logs", {"project_id": project, "deployment_id": deployment}
        )
        assert logs["kind"] == "build" and logs["lines"]
        projects = (await server.ok("list_projects"))["projects"]
        assert [p["name"] for p in projects] == [name]
        credits = await server.ok("credits")
        assert credits["wallet"].lower() == agent.address.lower()
        assert Decimal(credits["session_spent_usd"]) == Decimal("1")  # two months
        assert credits["active_projects"] == 1

        # Another wallet asking about this project: the gateway's 403, then it serves on.
        other = Account.create()
        async with mcp_server(mcp_env(local_stack, other, tmp_path / "other"), errlog) as stranger:
            refused = await stranger.error(
                "deployment_status", {"project_id": project, "deployment_id": deployment}
            )
            assert "403" in refused
            assert (await stranger.ok("list_projects"))["projects"] == []

        # A build that fails (the simulator's marker file), on the credits left: a tool error
        # with the build's reason; the server answers the next call.
        broken = await server.error(
            "deploy",
            {
                "name": f"{name}-x",
                "files": [
                    {"path": "index.js", "content": "console.log(1)\n"},
                    {"path": "SIMULATE_BUILD_ERROR", "content": "npm ERR! missing script: build"},
                ],
                "use_existing_credits": True,
            },
        )
        assert "build failed" in broken and "build_error" in broken, broken

        redeployed = await server.ok(
            "redeploy",
            {
                "project_id": project,
                "files": [{"path": "index.js", "content": "console.log(2)\n"}],
                "use_existing_credits": True,
            },
        )
        assert redeployed["project_id"] == project and redeployed["status"]["status"] == "ready"
        assert redeployed["deployment_id"] != deployment and redeployed["payment"] is None

        # Arguments a tool does not take are refused, not dropped: a redeploy keeps the
        # variables of the first deploy, and says so.
        files = [{"path": "index.js", "content": "console.log(3)\n"}]
        kept = await server.error(
            "redeploy", {"project_id": project, "files": files, "env": {"APP_MODE": "off"}}
        )
        assert "takes no argument env" in kept and "keeps the environment variables" in kept
        assert "takes no argument month" in await server.error(
            "deploy", {"name": f"{name}-y", "files": files, "month": 2}
        )

        assert (await server.ok("delete_project", {"project_id": project}))["status"] == "deleted"
        assert name not in {
            p["name"]
            for p in (await server.ok("list_projects"))["projects"]
            if p["status"] != "deleted"
        }
        assert len(local_stack.transfers_from(agent.address)) == 1
    shown = [*server.texts, errlog.read_text(encoding="utf-8")]
    assert_key_absent(agent, *shown)
    for value in (secret_run, secret_file, secret_build):
        assert all(value not in text for text in shown)
    assert any("runEnvs: API_TOKEN, DB_PASSWORD; buildVars: NPM_TOKEN" in m for m in progress)


async def test_spend_caps_per_call_and_per_session_refuse_without_paying(
    local_stack: LocalStack, tmp_path: Path
) -> None:
    agent = local_stack.funded_agent()
    balance = lambda: local_stack.arbitrum.balance_of(ARBITRUM_USDC, agent.address)  # noqa: E731
    before = balance()
    env = mcp_env(
        local_stack, agent, tmp_path / "state", AGENT_MAX_USD="0.6", AGENT_MAX_USD_SESSION="0.8"
    )
    errlog = tmp_path / "mcp.log"
    async with mcp_server(env, errlog) as server:
        files = [{"path": "index.js", "content": "console.log(1)\n"}]
        # Two months ask 1.00 USD: above the call's cap of 0.6.
        above = await server.error(
            "deploy", {"name": f"cap-{uuid.uuid4().hex[:8]}", "files": files, "months": 2}
        )
        assert "paying 1 USD" in above and "0.6 USD" in above and "nothing was paid" in above, above
        # A call's own max_usd lowers the cap, never raises it.
        lowered = await server.error(
            "deploy", {"name": f"cap-{uuid.uuid4().hex[:8]}", "files": files, "max_usd": "0.1"}
        )
        assert "0.1 USD" in lowered and "nothing was paid" in lowered, lowered
        assert balance() == before and local_stack.transfers_from(agent.address) == []

        # Two top-ups of 0.5 at once against the session's 0.8: one pays, the other is refused
        # naming the session cap (the paying parts run one at a time). By transfer: a session
        # counts what a transfer pays as it counts a gasless authorization.
        topup = {"amount_usd": "0.5", "pay": "transfer"}
        answers = await asyncio.gather(server.call("topup", topup), server.call("topup", topup))
        [topped] = [a.structured_content for a in answers if not a.is_error]
        [session] = [error_text(a) for a in answers if a.is_error]
        assert topped is not None and Decimal(topped["credited_usd"]) == Decimal("0.5")
        assert topped["payment"]["gasless"] is False
        assert "AGENT_MAX_USD_SESSION" in session and "0.8 USD" in session, session
        assert "0.3 USD are left" in session and "nothing was paid" in session, session
        assert balance() == before - 500_000
        assert len(local_stack.transfers_from(agent.address)) == 1
        credits = await server.ok("credits")
        assert Decimal(credits["session_spent_usd"]) == Decimal("0.5")
        assert credits["session_cap_usd"] == "0.8" and credits["call_cap_usd"] == "0.6"
    assert_key_absent(agent, *server.texts, errlog.read_text(encoding="utf-8"))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_a_malformed_key_and_an_unreachable_gateway_are_tool_errors(
    local_stack: LocalStack, tmp_path: Path
) -> None:
    agent = local_stack.funded_agent()
    errlog = tmp_path / "mcp.log"
    good = bytes(agent.key).hex()
    malformed = "0x" + good[:60] + "zzzz"
    env = mcp_env(local_stack, agent, tmp_path / "state", AGENT_PRIVATE_KEY=malformed)
    async with mcp_server(env, errlog) as server:
        assert {t.name for t in (await server.session.list_tools()).tools} == TOOLS
        for tool in ("credits", "list_projects"):
            refused = await server.error(tool)
            assert "AGENT_PRIVATE_KEY is not a valid private key" in refused
    assert_key_absent(agent, *server.texts, errlog.read_text(encoding="utf-8"))
    assert all(good[:60] not in text for text in server.texts)

    env = mcp_env(
        local_stack,
        agent,
        tmp_path / "state",
        GATEWAY_URL=f"http://127.0.0.1:{closed_port()}",
        AGENT_UNREACHABLE_SECONDS="1",
    )
    async with mcp_server(env, errlog) as server:
        unreachable = await server.error(
            "deploy", {"name": "nowhere-app", "files": [{"path": "a.js", "content": "1"}]}
        )
        assert "did not answer" in unreachable, unreachable
        assert "did not answer" in await server.error("credits")
        assert {t.name for t in (await server.session.list_tools()).tools} == TOOLS
    assert local_stack.transfers_from(agent.address) == []
    assert_key_absent(agent, *server.texts, errlog.read_text(encoding="utf-8"))


def test_the_last_guard_scrubs_the_key_in_any_letter_case() -> None:
    agent = Account.create()
    key = bytes(agent.key).hex()
    tools = AgentTools(read_agent_environment({"AGENT_PRIVATE_KEY": "0x" + key}))
    mixed = "".join(c.upper() if i % 2 else c for i, c in enumerate(key))
    scrubbed = tools.scrub(f"failed with 0x{key} and {key.upper()} and {mixed}.")
    assert scrubbed == "failed with 0x[redacted] and [redacted] and [redacted]."
    assert set(tools.secrets) == {key, key.upper()}


async def test_gasless_payments_count_against_the_session_cap(
    local_stack: LocalStack, gasless: GatewayProcess, tmp_path: Path
) -> None:
    agent = test_gasless.usdc_holder(local_stack)  # USDC and no ETH: only gasless can pay
    before = local_stack.arbitrum.balance_of(ARBITRUM_USDC, agent.address)
    env = mcp_env(
        local_stack, agent, tmp_path / "state", GATEWAY_URL=gasless.url, AGENT_MAX_USD_SESSION="0.8"
    )
    errlog = tmp_path / "mcp.log"
    async with mcp_server(env, errlog) as server:
        progress: list[str] = []
        topped = await server.ok("topup", {"amount_usd": "0.5"}, progress=progress)
        assert topped["payment"]["gasless"] is True and topped["payment"]["tx"]
        assert any("gasless authorization" in m for m in progress), progress
        refused = await server.error("topup", {"amount_usd": "0.5"})
        assert "AGENT_MAX_USD_SESSION" in refused and "nothing was paid" in refused, refused
        assert Decimal((await server.ok("credits"))["session_spent_usd"]) == Decimal("0.5")
    assert local_stack.arbitrum.balance_of(ARBITRUM_USDC, agent.address) == before - 500_000
    assert test_gasless.eth(local_stack, agent.address) == 0
    assert_key_absent(agent, *server.texts, errlog.read_text(encoding="utf-8"))
