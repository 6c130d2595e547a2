"""Every invalid deploy is refused before any quote, payment claim or CreateOS call."""

from __future__ import annotations

from typing import Any

import pytest
from eth_account.signers.local import LocalAccount

from devstack.simulator.server import CreateOSSimulator
from tests.deploy_support import (
    b64,
    deploy,
    deploy_body,
    files_upload,
    random_tx,
    signed,
    zip_bytes,
)
from tests.support import Gateway

BAD_BODIES: list[tuple[str, dict[str, Any], str]] = [
    ("short name", deploy_body("abc"), "uniqueName"),
    ("name charset", deploy_body("under_score"), "uniqueName"),
    ("display name", deploy_body(displayName="x"), "displayName"),
    ("description", deploy_body(description="abc"), "description"),
    ("months zero", deploy_body(months=0), "months"),
    ("months float", deploy_body(months=1.5), "months"),
    ("months bool", deploy_body(months=True), "months"),
    ("months too many", deploy_body(months=25), "months"),
    ("unknown setting", deploy_body(settings={"gpu": True}), "settings.gpu"),
    ("port type", deploy_body(settings={"port": "80"}), "settings.port"),
    ("unknown field", deploy_body(extra=1), "extra"),
    ("no upload", {"uniqueName": "my-app", "displayName": "My App"}, "upload"),
    (
        "traversal",
        deploy_body(upload=files_upload({"ok.js": b"1", "../../etc/passwd": b"x"})),
        "upload.files[1].path",
    ),
    (
        "bad base64",
        deploy_body(upload={"type": "files", "files": [{"path": "a", "content": "%%%%"}]}),
        "upload.files[0].content",
    ),
    (
        "duplicate path",
        deploy_body(
            upload={
                "type": "files",
                "files": [{"path": "a.js", "content": ""}, {"path": "./a.js", "content": ""}],
            }
        ),
        "upload.files[1].path",
    ),
    (
        "not a zip",
        deploy_body(upload={"type": "zip", "data": b64(b"plain text, not a zip")}),
        "upload.data",
    ),
    (
        "zip traversal",
        deploy_body(upload={"type": "zip", "data": b64(zip_bytes({"../x": b"1"}))}),
        "upload.data",
    ),
]


@pytest.mark.parametrize(("case", "body", "field"), BAD_BODIES, ids=[c for c, _, _ in BAD_BODIES])
async def test_invalid_deploy_touches_nothing(
    gw: Gateway,
    sim: CreateOSSimulator,
    agent: LocalAccount,
    case: str,
    body: dict[str, Any],
    field: str,
) -> None:
    tx = random_tx()
    response = await deploy(gw, agent, body, X_Payment_Tx=tx)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field
    assert sim.requests == []  # not even the name check
    assert await gw.services.ledger.claim_state(42161, tx, agent.address) is None


@pytest.mark.parametrize("raw", [b"", b"not json", b"[1, 2]", b"\xff\xfe"])
async def test_unparsable_bodies_are_400(
    gw: Gateway, sim: CreateOSSimulator, agent: LocalAccount, raw: bytes
) -> None:
    response = await gw.client.post(
        "/agent/deploy",
        content=raw,
        headers={**signed(agent), "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["field"] == "body"
    assert sim.requests == []


async def test_too_many_files_and_too_many_bytes(
    gw: Gateway, sim: CreateOSSimulator, agent: LocalAccount
) -> None:
    many = {f"f{i}.txt": b"" for i in range(2001)}
    response = await deploy(gw, agent, deploy_body(upload=files_upload(many)))
    assert response.status_code == 400 and response.json()["field"] == "upload.files"
    big = deploy_body(upload=files_upload({"a.bin": bytes(26 * 2**20), "b.bin": bytes(25 * 2**20)}))
    response = await deploy(gw, agent, big)
    assert response.status_code == 400 and response.json()["field"] == "upload"
    assert sim.requests == []


async def test_body_over_the_limit_is_413(
    gw: Gateway, sim: CreateOSSimulator, agent: LocalAccount
) -> None:
    oversized = b"x" * (gw.settings.max_body_bytes + 1)
    response = await gw.client.post(
        "/agent/deploy",
        content=oversized,
        headers={**signed(agent), "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert sim.requests == []


async def test_unauthenticated_deploy_is_401_before_anything(
    gw: Gateway, sim: CreateOSSimulator
) -> None:
    response = await gw.client.post("/agent/deploy", json=deploy_body())
    assert response.status_code == 401
    assert sim.requests == []
