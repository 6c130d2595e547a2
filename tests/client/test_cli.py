"""The agent CLI as a subprocess against a local stack (tests/client/conftest.py): a paid
deploy, a second deploy on credits, list, status, logs, delete; the spend cap; secret files."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount

from gateway.client.cli import ExitCode
from gateway.config import PROJECT_ROOT
from tests.client.conftest import ARBITRUM_USDC, LocalStack

CLI_TIMEOUT_S = 120


def cli_env(stack: LocalStack, agent: LocalAccount, state_dir: Path) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT_", "GATEWAY_"))}
    env.update(
        GATEWAY_URL=stack.gateway.url,
        AGENT_PRIVATE_KEY="0x" + bytes(agent.key).hex(),
        AGENT_RPC_URL_ARBITRUM=stack.nodes["arbitrum"].url,
        AGENT_RPC_URL_BASE=stack.nodes["base"].url,
        AGENT_STATE_DIR=str(state_dir),
    )
    return env


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )


def answer(done: subprocess.CompletedProcess[str], code: int = 0) -> Any:
    assert done.returncode == code, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return json.loads(done.stdout)


def make_app(root: Path) -> Path:
    """An app directory with things that must never be uploaded next to the real files."""
    files = {
        "index.js": "console.log('hi')\n",
        "package.json": '{"name": "app"}\n',
        "src/util.js": "module.exports = 1\n",
        ".env": "API_KEY=secret\n",
        ".env.production": "API_KEY=secret\n",
        "deploy.pem": "-----BEGIN PRIVATE KEY-----\n",
        "config/id_rsa": "-----BEGIN OPENSSH PRIVATE KEY-----\n",
        "credentials.json": "{}\n",
        ".git/config": "[core]\n",
        "node_modules/left-pad/index.js": "module.exports = 0\n",
        "venv/pyvenv.cfg": "home = /usr\n",
    }
    for path, text in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return root


def test_paid_deploy_then_credits_list_status_logs_delete(
    local_stack: LocalStack, tmp_path: Path
) -> None:
    agent = local_stack.funded_agent()
    env = cli_env(local_stack, agent, tmp_path / "state")
    app = make_app(tmp_path / "app")
    before = local_stack.arbitrum.balance_of(ARBITRUM_USDC, agent.address)

    first = run_cli(env, "deploy", str(app), "--name", "cli-paid-app", "--max-usd", "1")
    assert first.returncode == 0, first.stderr
    assert "402: 0.5 USD" in first.stderr
    assert "transfer mined" in first.stderr
    assert (
        "left out secrets: .env, .env.production, config/id_rsa, credentials.json, deploy.pem"
        in (first.stderr)
    )
    assert "ready: https://cli-paid-app-" in first.stdout
    assert local_stack.arbitrum.balance_of(ARBITRUM_USDC, agent.address) == before - 500_000
    # What CreateOS received: the app's files and nothing else.
    assert local_stack.uploaded_names() >= {"index.js", "package.json", "src/util.js"}
    for secret in (".env", ".env.production", "deploy.pem", "config/id_rsa", "credentials.json"):
        assert secret not in local_stack.uploaded_names()
    assert not any(
        name.startswith((".git/", "node_modules/", "venv/"))
        for name in local_stack.uploaded_names()
    )

    # Again, on the credits the first payment left (another project depends on them: opt in).
    second = answer(
        run_cli(env, "deploy", str(app), "--name", "cli-credit-app", "--use-credits", "--json")
    )
    assert second["status"]["status"] == "ready"
    assert second["url"].startswith("https://cli-credit-app-")
    assert second["started"]["payment"] is None
    assert len(local_stack.transfers_from(agent.address)) == 1

    listed = answer(run_cli(env, "projects", "--json"))["projects"]
    assert sorted(p["name"] for p in listed) == ["cli-credit-app", "cli-paid-app"]
    assert all(p["url"] and p["status"] for p in listed)

    project_id = second["started"]["project_id"]
    deployment_id = second["started"]["deployment_id"]
    status = answer(run_cli(env, "status", project_id, deployment_id, "--json"))
    assert status["status"] == "ready" and status["endpoint"] == second["url"]

    logs = answer(run_cli(env, "logs", project_id, deployment_id, "--json"))
    assert logs["kind"] == "build" and logs["lines"]

    assert answer(run_cli(env, "delete", project_id, "--json")) == {
        "projectId": project_id,
        "status": "deleted",
    }
    [deleted] = [p for p in local_stack.simulator.projects() if p.id == project_id]
    assert deleted.status in ("deleting", "deleted")


def test_quote_above_max_usd_is_refused_without_paying(
    local_stack: LocalStack, tmp_path: Path
) -> None:
    agent = local_stack.funded_agent()
    env = cli_env(local_stack, agent, tmp_path / "state")
    app = make_app(tmp_path / "app")

    refused = run_cli(
        env, "deploy", str(app), "--name", "cli-capped-app", "--months", "3", "--max-usd", "1"
    )
    assert refused.returncode == ExitCode.PAYMENT_REFUSED == 3, refused.stderr
    assert (
        "error: the gateway asks 1.5 USD, above the spend cap of 1 USD; nothing was paid"
        in refused.stderr
    )
    assert local_stack.transfers_from(agent.address) == []


def test_missing_key_is_a_usage_error(local_stack: LocalStack, tmp_path: Path) -> None:
    agent = local_stack.funded_agent(usdc=0)
    env = cli_env(local_stack, agent, tmp_path / "state")
    del env["AGENT_PRIVATE_KEY"]
    done = run_cli(env, "projects")
    assert done.returncode == ExitCode.USAGE == 2
    assert "AGENT_PRIVATE_KEY is not set" in done.stderr


def test_topup_then_deploy_no_wait_status_wait_logs_redeploy_balance(
    local_stack: LocalStack, tmp_path: Path
) -> None:
    """The commands beyond the first deploy, on one wallet: a top-up pays for everything after
    it; a redeploy whose upload breaks the build exits with the build-failed code."""
    agent = local_stack.funded_agent()
    env = cli_env(local_stack, agent, tmp_path / "state")
    app = make_app(tmp_path / "app")

    topped = answer(run_cli(env, "topup", "1", "--json"))
    [paid] = local_stack.transfers_from(agent.address)
    assert topped["payment"]["tx_hash"] == paid["transactionHash"]
    assert topped["payment"]["chain"] == "arbitrum" and topped["payment"]["token"] == "usdc"
    assert topped["payment"]["amount_token"] == 1_000_000
    assert Decimal(topped["credited_usd"]) == Decimal(topped["balance_usd"]) == 1
    assert topped["credited_earlier"] is False

    started = answer(
        run_cli(env, "deploy", str(app), "--name", "cli-ops-app", "--no-wait", "--json")
    )
    assert started["payment"] is None  # the top-up covers it
    project_id, deployment_id = started["project_id"], started["deployment_id"]

    waited = run_cli(env, "status", project_id, deployment_id, "--wait")
    assert waited.returncode == 0, waited.stderr
    assert waited.stdout.startswith("ready ") and " https://cli-ops-app-" in waited.stdout

    runtime = answer(run_cli(env, "logs", project_id, deployment_id, "--runtime", "--json"))
    assert runtime["kind"] == "runtime" and runtime["deployment_id"] == deployment_id
    assert "Server started, listening" in runtime["text"]

    (app / "index.js").write_text("console.log('v2')\n", encoding="utf-8")
    redeployed = run_cli(env, "redeploy", project_id, str(app), "--use-credits")
    assert redeployed.returncode == 0, redeployed.stderr
    assert redeployed.stdout.startswith("ready: https://cli-ops-app-")

    (app / "SIMULATE_BUILD_ERROR").write_text("npm ERR! missing script: build\n", encoding="utf-8")
    broken = answer(
        run_cli(env, "redeploy", project_id, str(app), "--use-credits", "--json"),
        ExitCode.BUILD_FAILED,
    )
    assert broken["kind"] == "BuildFailed" and broken["exit_code"] == ExitCode.BUILD_FAILED == 4
    assert broken["status"]["status"] == "failed"
    assert broken["status"]["deployment_status"] == "build_error"
    assert "npm ERR! missing script: build" in broken["status"]["reason"]

    balance = answer(run_cli(env, "balance", "--json"))
    assert balance["wallet"] == agent.address and balance["active_projects"] == 1
    [payment] = [entry for entry in balance["ledger"] if entry["kind"] == "payment"]
    assert paid["transactionHash"] in payment["ref"] and Decimal(payment["amount_usd"]) == 1
    assert Decimal(balance["balance_usd"]) == Decimal(balance["ledger"][0]["balance_usd"])
    assert len(local_stack.transfers_from(agent.address)) == 1  # only the top-up was paid
