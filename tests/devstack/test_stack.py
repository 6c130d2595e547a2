"""``python -m gateway dev``: the README's first command, run as a newcomer would."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from gateway.config import PROJECT_ROOT

DEMO_TIMEOUT_S = 180


def dev_env(**changes: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "REDIS_URL", "AGENT_"))
    }
    env.update(changes)
    return env


def exported_state_dir(out: str) -> Path:
    found = re.search(r"^export AGENT_STATE_DIR=(\S+)$", out, re.M)
    assert found, out
    return Path(found.group(1))


def run_demo(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "dev", "--demo", "--any-ports"],
        cwd=PROJECT_ROOT,
        env=dev_env(**env),
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_S,
        check=False,
    )


def test_demo_deploys_end_to_end_and_exits_0() -> None:
    done = run_demo()
    out = done.stdout
    assert done.returncode == 0, f"stdout:\n{out}\nstderr:\n{done.stderr}"
    assert re.search(r"gateway +http://127\.0\.0\.1:\d+", out)
    assert "export AGENT_PRIVATE_KEY=0x" in out
    assert "left out secrets: ['.env']" in out
    steps = [
        "402: 0.5 USD = 500000 base units of USDC on arbitrum",
        "signing a gasless authorization of 0.500000 USDC on arbitrum",
        "the gateway settled the authorization in 0x",
        "started",
        "building",
        "live at https://demo-app-",
        "demo: ready at https://demo-app-",
    ]
    positions = [out.find(step) for step in steps]
    assert -1 not in positions, out
    assert positions == sorted(positions), out
    assert "credits 0.5 USD, 1 active project(s)" in out
    # The demo wallet holds no ETH, before and after: the gateway's settler paid the gas.
    assert "the wallet's ETH: 0;" in out
    assert "transfer sent" not in out
    # The run's own agent state (journal included), gone with the run: the next starts empty.
    state_dir = exported_state_dir(out)
    assert state_dir.name == "agent" and state_dir.parent.name.startswith("gateway-dev-")
    assert not state_dir.parent.exists()


def test_an_agent_state_dir_set_by_the_user_is_exported_used_and_kept(tmp_path: Path) -> None:
    state_dir = tmp_path / "my agent state"
    done = run_demo(AGENT_STATE_DIR=str(state_dir))
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert f"export AGENT_STATE_DIR='{state_dir}'" in done.stdout
    journal = state_dir / "payments.json"  # the demo journalled its payment there
    assert json.loads(journal.read_text(encoding="utf-8")) == {}  # and forgot it once deployed


def test_sigterm_stops_the_whole_stack() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "dev", "--any-ports"],
        cwd=PROJECT_ROOT,
        env=dev_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if "Ctrl-C stops everything" in line:
            break
    urls = re.findall(r"^(?:anvil|gateway|createos) +(http://\S+)", "".join(lines), re.M)
    assert len(urls) == 4, lines
    state_dir = exported_state_dir("".join(lines))
    assert state_dir.is_dir()
    assert httpx.get(urls[-1] + "/health").json() == {"status": "ok"}

    process.send_signal(signal.SIGTERM)
    rest, _ = process.communicate(timeout=60)
    assert process.returncode == 0
    assert "stopping" in rest
    assert not state_dir.exists()
    for url in urls:  # nothing answers any more: every part was stopped
        try:
            httpx.post(url, json={}, timeout=1)
        except httpx.TransportError:
            continue
        raise AssertionError(f"{url} still answers after the stack stopped")


def test_missing_anvil_says_how_to_install_it() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "dev", "--demo"],
        cwd=PROJECT_ROOT,
        env=dev_env(ANVIL_BIN="/nonexistent/anvil"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "anvil is not installed" in done.stderr
    assert "npm ci" in done.stderr and "scripts/setup.sh" in done.stderr
