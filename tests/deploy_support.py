"""Fixtures and helpers for the deploy, project and upload tests.

The CreateOS simulator runs once per session over real HTTP (``ServerThread``) on a manual
clock and is reset before each test; the gateway runs in-process on the real Redis and both
anvil chains, pointed at the simulator. The root conftest registers this module as a plugin.
"""

from __future__ import annotations

import base64
import io
import os
import zipfile
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from eth_account.signers.local import LocalAccount

from devstack.anvil import CANONICAL_TOKENS, AnvilNode
from devstack.clock import ManualClock
from devstack.server_thread import ServerThread
from devstack.simulator.server import CreateOSSimulator, SimulatorConfig
from gateway.client.signing import auth_headers
from gateway.config import Settings
from tests.support import USDC, Gateway, SettingsFactory, running_gateway

SIM_KEY = "sim-test-key"
OTHER_SIM_KEY = "sim-other-key"
ARBITRUM_USDC = CANONICAL_TOKENS[42161]["usdc"]
#: Long enough for any simulated deployment to finish (queue 1 s + build 2 s + deploy 1 s).
FINISH_SECONDS = 10.0
CREATE = r"/v1/projects"
UPLOAD_FILES = r"/v1/projects/[^/]+/deployments/files/base64"
UPLOAD_ZIP = r"/v1/projects/[^/]+/deployments/upload-zip"


def fresh_config() -> SimulatorConfig:
    return SimulatorConfig(api_keys=(SIM_KEY, OTHER_SIM_KEY))


@pytest.fixture(scope="session")
def sim_clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(scope="session")
def sim_server(sim_clock: ManualClock) -> Iterator[tuple[CreateOSSimulator, ServerThread]]:
    simulator = CreateOSSimulator(fresh_config(), clock=sim_clock)
    with ServerThread(simulator.app) as server:
        yield simulator, server


@pytest.fixture
def sim(sim_server: tuple[CreateOSSimulator, ServerThread]) -> CreateOSSimulator:
    """The simulator, emptied: no projects, requests or faults; default config."""
    simulator, _ = sim_server
    simulator.reset()
    simulator.config = fresh_config()
    return simulator


@pytest.fixture
def sim_url(sim_server: tuple[CreateOSSimulator, ServerThread]) -> str:
    return sim_server[1].url


def deploy_settings(make_settings: SettingsFactory, nodes: Any) -> Settings:
    """``make_settings`` already points at the simulator; deploy tests make many requests."""
    return make_settings(nodes, createos_api_key=SIM_KEY, rate_limit_requests=10_000)


@pytest.fixture
async def gw(
    make_settings: SettingsFactory,
    chains: dict[str, AnvilNode],
    sim: CreateOSSimulator,
) -> AsyncIterator[Gateway]:
    """The gateway on both anvil chains, the session's Redis and the (reset) simulator."""
    async with running_gateway(deploy_settings(make_settings, chains)) as gateway:
        yield gateway


# --- requests --------------------------------------------------------------------------------


def signed(account: LocalAccount, **extra: str) -> dict[str, str]:
    """Fresh auth headers plus any extra headers (``X_Payment_Tx`` -> ``X-Payment-Tx``)."""
    headers = auth_headers(account)
    headers.update({name.replace("_", "-"): value for name, value in extra.items()})
    return headers


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def files_upload(files: dict[str, bytes] | None = None) -> dict[str, Any]:
    files = files if files is not None else {"index.js": b"console.log('hi')\n"}
    return {
        "type": "files",
        "files": [{"path": path, "content": b64(data)} for path, data in files.items()],
    }


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return buffer.getvalue()


def deploy_body(name: str = "my-app", **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "uniqueName": name,
        "displayName": "My App",
        "description": "An agent's app",
        "upload": files_upload(),
    }
    body.update(changes)
    return body


async def deploy(
    gateway: Gateway, account: LocalAccount, body: dict[str, Any], **headers: str
) -> httpx.Response:
    return await gateway.client.post("/agent/deploy", json=body, headers=signed(account, **headers))


async def status(
    gateway: Gateway, account: LocalAccount, project_id: str, deployment_id: str
) -> httpx.Response:
    return await gateway.client.get(
        f"/agent/deploy/{project_id}/{deployment_id}/status", headers=signed(account)
    )


def random_tx() -> str:
    return "0x" + os.urandom(32).hex()


ONE_USD = USDC
