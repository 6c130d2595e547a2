"""Secrets for the deployed app: ``deploy --env/--env-file/--build-env`` reach CreateOS as
``settings.runEnvs``/``buildVars``, and no value is ever written anywhere else: not to Redis
(every key and value scanned), not to the gateway's log (a served process at INFO), not to
``/metrics``, not to an error body, not to the CLI's output, which names the keys only."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from eth_account.signers.local import LocalAccount

from devstack.gateway_process import GatewayProcess
from gateway.client.envvars import EnvError, collect_env
from gateway.client.signing import auth_headers
from tests.client.conftest import LocalStack
from tests.client.test_cli import answer, cli_env, make_app, run_cli


async def everything_in_redis(url: str) -> str:
    """Every key and every value of the Redis, as one text to search."""
    client = aioredis.Redis.from_url(url, decode_responses=False)
    parts: list[bytes] = []
    try:
        async for key in client.scan_iter(count=1000):
            parts.append(key)
            kind = (await client.type(key)).decode()
            if kind == "string":
                parts.append(await client.get(key) or b"")
            elif kind == "hash":
                for field, value in (await client.hgetall(key)).items():
                    parts += [field, value]
            elif kind == "list":
                parts += await client.lrange(key, 0, -1)
            elif kind == "set":
                parts += list(await client.smembers(key))
            elif kind == "zset":
                parts += [m for m, _ in await client.zrange(key, 0, -1, withscores=True)]
    finally:
        await client.aclose()
    return b"\n".join(parts).decode("utf-8", "replace")


async def test_env_values_reach_createos_and_nothing_else(
    local_stack: LocalStack, redis_url: str, tmp_path: Path
) -> None:
    stack = local_stack
    secret_run, secret_file, secret_build = (f"s3cr3t-{secrets.token_hex(8)}" for _ in range(3))
    agent: LocalAccount = stack.funded_agent()
    app = make_app(tmp_path / "app")
    env_file = tmp_path / "deploy.env"
    env_file.write_text(
        f'# the app\'s secrets\nexport DB_PASSWORD="{secret_file}"\nMODE=production\n',
        encoding="utf-8",
    )
    gateway = GatewayProcess(
        stack.gateway.config, stack.gateway.env, tmp_path / "gateway-info.log", log_level="info"
    )
    with gateway:
        env = cli_env(stack, agent, tmp_path / "state")
        env["GATEWAY_URL"] = gateway.url
        done = run_cli(
            env, "deploy", str(app), "--name", f"env-{secrets.token_hex(3)}", "--json",
            "--env-file", str(env_file), "--env", f"API_TOKEN={secret_run}",
            "--build-env", f"NPM_TOKEN={secret_build}",
        )  # fmt: skip
        result = answer(done)
        assert result["url"]
        # An invalid value (too long) is refused by the gateway without echoing it.
        async with httpx.AsyncClient(base_url=gateway.url) as client:
            too_long = await client.post(
                "/agent/deploy",
                headers=auth_headers(agent),
                json={
                    "uniqueName": "too-long-env",
                    "displayName": "Too Long",
                    "upload": {"type": "files", "files": [{"path": "a.js", "content": "eA=="}]},
                    "settings": {"runEnvs": {"BIG": secret_run * 400}},
                },
            )
            metrics = (await client.get("/metrics")).text
        assert too_long.status_code == 400, too_long.text
        assert too_long.json()["field"] == "settings.runEnvs.BIG"

    [create] = [
        r for r in stack.simulator.requests
        if r.method == "POST" and r.path == "/v1/projects" and r.json
        and r.json.get("settings", {}).get("runEnvs", {}).get("API_TOKEN") == secret_run
    ]  # fmt: skip
    assert create.json is not None
    assert create.json["settings"]["runEnvs"] == {
        "DB_PASSWORD": secret_file,
        "MODE": "production",
        "API_TOKEN": secret_run,
    }
    assert create.json["settings"]["buildVars"] == {"NPM_TOKEN": secret_build}

    assert "runEnvs: API_TOKEN, DB_PASSWORD, MODE; buildVars: NPM_TOKEN" in done.stderr
    stored = await everything_in_redis(redis_url)
    log = (tmp_path / "gateway-info.log").read_text(encoding="utf-8")
    assert "deploy started" in log  # the log was written at INFO
    for value in (secret_run, secret_file, secret_build):
        assert value not in done.stdout and value not in done.stderr
        assert value not in stored
        assert value not in log
        assert value not in metrics
        assert value not in too_long.text


def test_env_file_and_pairs_merge_and_errors_never_show_a_value(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("A=from-file\nB='quoted value'\n", encoding="utf-8")
    app_env = collect_env([env_file], ["A=from-flag", "EMPTY="], ["B_ONLY=1"])
    assert app_env.settings() == {
        "runEnvs": {"A": "from-flag", "B": "quoted value", "EMPTY": ""},
        "buildVars": {"B_ONLY": "1"},
    }
    for bad, flag in ((["no-equals-hunter2"], "--env"), (["1BAD=hunter2"], "--env")):
        with pytest.raises(EnvError) as caught:
            collect_env([], bad, [])
        assert flag in str(caught.value)
    with pytest.raises(EnvError) as caught:
        collect_env([], [f"LONG={'hunter2' * 1000}"], [])
    assert "LONG" in str(caught.value) and "hunter2" not in str(caught.value)
    broken = tmp_path / "broken.env"
    broken.write_text("JUST_A_NAME\n", encoding="utf-8")
    with pytest.raises(EnvError, match="JUST_A_NAME"):
        collect_env([broken], [], [])
    with pytest.raises(EnvError, match="not a file"):
        collect_env([tmp_path / "missing.env"], [], [])


def test_cli_refuses_a_malformed_env_with_exit_2_and_pays_nothing(
    local_stack: LocalStack, tmp_path: Path
) -> None:
    agent = local_stack.funded_agent()
    env = cli_env(local_stack, agent, tmp_path / "state")
    done = run_cli(env, "deploy", str(make_app(tmp_path / "app")), "--name", "bad-env-app",
                   "--json", "--env", "NOT VALID=hunter2")  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "hunter2" not in done.stdout + done.stderr
    assert json.loads(done.stdout)["error"]
    assert local_stack.transfers_from(agent.address) == []


def test_cli_redeploy_refuses_app_variables_naming_why_never_the_value(
    local_stack: LocalStack, tmp_path: Path
) -> None:
    agent = local_stack.funded_agent()
    env = cli_env(local_stack, agent, tmp_path / "state")
    app = str(make_app(tmp_path / "app"))
    for option in ("--env", "--env-file", "--build-env"):
        done = run_cli(env, "redeploy", "some-project", app, option, "TOKEN=hunter2")
        assert done.returncode == 2, done.stderr
        assert "keeps the environment variables" in done.stderr
        assert "hunter2" not in done.stdout + done.stderr
    assert local_stack.transfers_from(agent.address) == []
