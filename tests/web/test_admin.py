"""Operator routes (docs/PROTOCOL.md section 3, Operator) and the command-line reads that share
their data.

Real Redis, the app in-process; payments are recorded through the ledger's own claim-and-credit
script (the verification itself is tested with anvil elsewhere). The CLI runs as a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from devstack.simulator.server import CreateOSSimulator
from gateway.config import PROJECT_ROOT
from gateway.ledger import EntryKind, Ledger
from gateway.types import checksum_address
from tests.deploy_support import SIM_KEY
from tests.support import LOCAL_CONFIG, PAY_TO, Gateway, SettingsFactory, running_gateway

TOKEN = "operator-secret-token"
WALLET = "0x" + "ab" * 20
WALLET_CHECKSUMMED = checksum_address(WALLET)
TX = "0x" + "5c" * 32
ARBITRUM = 42161


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def admin_gw(make_settings: SettingsFactory) -> AsyncIterator[Gateway]:
    settings = make_settings(admin_token=TOKEN, createos_api_key=SIM_KEY)
    async with running_gateway(settings) as gateway:
        yield gateway


async def record_payment(ledger: Ledger, wallet: str = WALLET, tx: str = TX) -> None:
    """A credited payment with the record shape ``PaymentService`` stores."""
    _, ticket = await ledger.claim_payment(ARBITRUM, tx, wallet)
    record: dict[str, str | int] = {
        "chain": "arbitrum",
        "chain_id": ARBITRUM,
        "tx": tx,
        "token": "usdc",
        "token_address": "0xaf88d065e77c8cc2239327c5edb3a432268e5831",
        "wallet": wallet.lower(),
        "payer": wallet.lower(),
        "pay_to": PAY_TO.lower(),
        "amount_units": "2500000",
        "amount_micro": 2_500_000,
        "block_number": 7,
        "finality": "latest",
    }
    await ledger.credit_payment(ticket, wallet, 2_500_000, record)


# --- access ---------------------------------------------------------------------------------


async def test_admin_routes_are_off_without_a_token(make_settings: SettingsFactory) -> None:
    async with running_gateway(make_settings(createos_api_key=SIM_KEY)) as gateway:
        for method, path in (
            ("GET", f"/admin/wallets/{WALLET}"),
            ("POST", f"/admin/wallets/{WALLET}/adjust"),
            ("GET", f"/admin/payments/arbitrum/{TX}"),
        ):
            answer = await gateway.client.request(method, path, headers=bearer())
            assert answer.status_code == 404, (path, answer.text)
            assert "error" in answer.json()


@pytest.mark.parametrize(
    "headers",
    [{}, bearer("wrong"), bearer(TOKEN + "x"), {"Authorization": TOKEN}, bearer("")],
    ids=["missing", "wrong", "longer", "no-scheme", "empty"],
)
async def test_a_missing_or_wrong_token_is_401(admin_gw: Gateway, headers: dict[str, str]) -> None:
    answer = await admin_gw.client.get(f"/admin/wallets/{WALLET}", headers=headers)
    assert answer.status_code == 401
    assert answer.json()["code"] == "admin_auth"
    assert answer.headers["WWW-Authenticate"] == "Bearer"
    adjust = await admin_gw.client.post(
        f"/admin/wallets/{WALLET}/adjust",
        json={"amount_usd": "1.00", "reason": "x"},
        headers=headers,
    )
    assert adjust.status_code == 401
    assert await admin_gw.balance(WALLET) == 0


# --- reads ----------------------------------------------------------------------------------


async def test_wallet_read_shows_credits_ledger_projects_and_payments(admin_gw: Gateway) -> None:
    ledger = admin_gw.services.ledger
    await record_payment(ledger)
    await ledger.apply(WALLET, EntryKind.BURN, -685, ref="p1:1", reason="hour")
    await admin_gw.services.ownership.record_project(
        WALLET, "proj-1", unique_name="shown-app", display_name="Shown App"
    )

    answer = await admin_gw.client.get(f"/admin/wallets/{WALLET.upper()[2:]}", headers=bearer())
    assert answer.status_code == 400  # no 0x: malformed
    assert answer.json()["field"] == "address"

    answer = await admin_gw.client.get(f"/admin/wallets/{WALLET.upper()}", headers=bearer())
    assert answer.status_code == 400  # 0X prefix

    answer = await admin_gw.client.get(f"/admin/wallets/{WALLET}", headers=bearer())
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["wallet"] == WALLET_CHECKSUMMED
    assert body["balance_usd"] == 2.499315 and body["balance_micro"] == 2_499_315
    assert body["ledger_consistent"] is True and body["ledger_entries"] == 2
    assert [e["kind"] for e in body["ledger"]] == ["burn", "payment"]
    assert [(p["id"], p["name"], p["status"]) for p in body["projects"]] == [
        ("proj-1", "shown-app", "active")
    ]
    assert body["payments"] == [
        {
            "chain": "arbitrum",
            "chain_id": ARBITRUM,
            "tx": TX,
            "amount_usd": 2.5,
            "amount_micro": 2_500_000,
            "status": "credited",
        }
    ]


async def test_payment_read_shows_the_recorded_verification(admin_gw: Gateway) -> None:
    await record_payment(admin_gw.services.ledger)
    answer = await admin_gw.client.get(
        f"/admin/payments/ARBITRUM/0x{TX[2:].upper()}", headers=bearer()
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["chain"], body["tx"], body["claim"], body["status"]) == (
        "arbitrum",
        TX,
        "used",
        "credited",
    )
    record = body["record"]
    assert record["payer"] == WALLET_CHECKSUMMED and record["pay_to"] == PAY_TO
    assert record["amount_units"] == "2500000" and record["block_number"] == 7
    assert isinstance(record["ledger_seq"], int)


async def test_payment_read_errors(admin_gw: Gateway) -> None:
    unknown = await admin_gw.client.get(f"/admin/payments/arbitrum/{TX}", headers=bearer())
    assert unknown.status_code == 404 and unknown.json()["code"] == "unknown_payment"
    chain = await admin_gw.client.get(f"/admin/payments/solana/{TX}", headers=bearer())
    assert chain.status_code == 400 and chain.json()["field"] == "chain"
    tx = await admin_gw.client.get("/admin/payments/arbitrum/0x1234", headers=bearer())
    assert tx.status_code == 400 and tx.json()["field"] == "txHash"


# --- adjustments ----------------------------------------------------------------------------


async def test_adjust_writes_a_signed_entry_that_names_the_reason(admin_gw: Gateway) -> None:
    up = await admin_gw.client.post(
        f"/admin/wallets/{WALLET}/adjust",
        json={"amount_usd": "1.50", "reason": "goodwill after outage #12"},
        headers=bearer(),
    )
    assert up.status_code == 200, up.text
    body = up.json()
    assert body["wallet"] == WALLET_CHECKSUMMED and body["balance_usd"] == 1.5
    assert body["entry"]["kind"] == "adjustment"
    assert body["entry"]["amount_usd"] == 1.5
    assert body["entry"]["reason"] == "goodwill after outage #12"

    down = await admin_gw.client.post(
        f"/admin/wallets/{WALLET}/adjust",
        json={"amount_usd": "-0.25", "reason": "duplicate goodwill"},
        headers=bearer(),
    )
    assert down.status_code == 200 and down.json()["balance_usd"] == 1.25
    assert down.json()["entry"]["amount_usd"] == -0.25

    entries = await admin_gw.services.ledger.entries(WALLET)
    assert [(e.kind, e.amount_micro, e.reason) for e in entries] == [
        ("adjustment", -250_000, "duplicate goodwill"),
        ("adjustment", 1_500_000, "goodwill after outage #12"),
    ]
    assert (await admin_gw.services.ledger.check_consistency(WALLET)).ok


async def test_adjust_with_an_idempotency_key_moves_money_once(admin_gw: Gateway) -> None:
    """An operator's retried adjustment (same key, same body) replays the first answer; the
    same key with another body is a 409; an invalid body is not stored and can be retried."""
    url = f"/admin/wallets/{WALLET}/adjust"
    body = {"amount_usd": "2.00", "reason": "refund for ticket 77"}
    headers = {**bearer(), "Idempotency-Key": "ticket-77"}
    first = await admin_gw.client.post(url, json=body, headers=headers)
    again = await admin_gw.client.post(url, json=body, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    other = await admin_gw.client.post(url, json={**body, "amount_usd": "3.00"}, headers=headers)
    assert other.status_code == 409 and other.json()["code"] == "idempotency_key_reused"
    bad_key = {**bearer(), "Idempotency-Key": "ticket-78"}
    invalid = await admin_gw.client.post(url, json={"amount_usd": "0"}, headers=bad_key)
    assert invalid.status_code == 400
    fixed = await admin_gw.client.post(url, json=body, headers=bad_key)
    assert fixed.status_code == 200
    entries = await admin_gw.services.ledger.entries(WALLET)
    assert [e.amount_micro for e in entries] == [2_000_000, 2_000_000]
    assert (await admin_gw.services.ledger.check_consistency(WALLET)).ok


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"amount_usd": 1.5, "reason": "float"}, "amount_usd"),
        ({"amount_usd": "1.5000001", "reason": "too precise"}, "amount_usd"),
        ({"amount_usd": "abc", "reason": "text"}, "amount_usd"),
        ({"amount_usd": "0", "reason": "zero"}, "amount_usd"),
        ({"reason": "missing amount"}, "amount_usd"),
        ({"amount_usd": "1.00"}, "reason"),
        ({"amount_usd": "1.00", "reason": "   "}, "reason"),
        ({"amount_usd": "1.00", "reason": "x" * 501}, "reason"),
        (["amount_usd", "1.00"], "body"),
    ],
)
async def test_bad_adjustments_are_400_naming_the_field(
    admin_gw: Gateway, body: object, field: str
) -> None:
    answer = await admin_gw.client.post(
        f"/admin/wallets/{WALLET}/adjust", json=body, headers=bearer()
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == field
    assert await admin_gw.services.ledger.entries(WALLET) == []


async def test_adjust_rejects_a_malformed_address_and_a_non_json_body(admin_gw: Gateway) -> None:
    address = await admin_gw.client.post(
        "/admin/wallets/0x1234/adjust", json={"amount_usd": "1", "reason": "x"}, headers=bearer()
    )
    assert address.status_code == 400 and address.json()["field"] == "address"
    garbage = await admin_gw.client.post(
        f"/admin/wallets/{WALLET}/adjust", content=b"{not json", headers=bearer()
    )
    assert garbage.status_code == 400 and garbage.json()["field"] == "body"


# --- the command line -----------------------------------------------------------------------


def run_cli(config: Path, redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REDIS_URL": redis_url, "GATEWAY_CONFIG": str(config)}
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def cli_config(tmp_path: Path, key_prefix: str) -> Path:
    """config/local.toml with this test's key prefix, so the CLI reads this test's keys."""
    text = LOCAL_CONFIG.read_text(encoding="utf-8")
    assert 'redis_key_prefix = "gwdev:"' in text
    path = tmp_path / "cli.toml"
    path.write_text(text.replace('"gwdev:"', f'"{key_prefix}"'), encoding="utf-8")
    return path


async def test_cli_credits_and_payment_print_the_same_data_as_the_routes(
    admin_gw: Gateway, cli_config: Path, redis_url: str
) -> None:
    await record_payment(admin_gw.services.ledger)
    await admin_gw.client.post(
        f"/admin/wallets/{WALLET}/adjust",
        json={"amount_usd": "-0.50", "reason": "refund fee"},
        headers=bearer(),
    )
    route = (await admin_gw.client.get(f"/admin/wallets/{WALLET}", headers=bearer())).json()

    as_json = run_cli(cli_config, redis_url, "credits", WALLET, "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == route

    readable = run_cli(cli_config, redis_url, "credits", WALLET)
    assert readable.returncode == 0, readable.stderr
    assert WALLET_CHECKSUMMED in readable.stdout
    assert "balance  2 USD (200 credits)" in readable.stdout
    assert "refund fee" in readable.stdout and "consistent: yes" in readable.stdout

    payment = run_cli(cli_config, redis_url, "payment", "arbitrum", TX, "--json")
    assert payment.returncode == 0, payment.stderr
    route_payment = await admin_gw.client.get(f"/admin/payments/arbitrum/{TX}", headers=bearer())
    assert json.loads(payment.stdout) == route_payment.json()
    shown = run_cli(cli_config, redis_url, "payment", "arbitrum", TX)
    assert shown.returncode == 0 and "status   credited, claim used" in shown.stdout

    unknown = run_cli(cli_config, redis_url, "payment", "arbitrum", "0x" + "00" * 32)
    assert unknown.returncode == 1 and "No payment recorded" in unknown.stderr
    malformed = run_cli(cli_config, redis_url, "credits", "0x1234")
    assert malformed.returncode == 2 and "address" in malformed.stderr


def test_every_admin_route_is_documented_with_the_admin_token() -> None:
    from gateway.web.openapi import PATHS
    from gateway.web.routes import routes

    admin_routes = {
        (r.path, method.lower())
        for r in routes
        if r.path.startswith("/admin/")
        for method in (r.methods or ())
        if method != "HEAD"
    }
    documented = {
        (path, method)
        for path, operations in PATHS.items()
        if path.startswith("/admin/")
        for method in operations
    }
    assert admin_routes == documented
    for path, method in documented:
        operation = PATHS[path][method]
        assert operation["security"] == [{"adminToken": []}]
        assert {"400", "401", "404"} <= set(operation["responses"])


async def test_a_positive_adjustment_resumes_a_suspended_project(
    admin_gw: Gateway, sim: CreateOSSimulator
) -> None:
    svc = admin_gw.services
    project_id = await svc.upstream.create_project(
        unique_name="adjust-resume",
        display_name="Adjust resume",
        description=None,
        settings={"runtime": "build-ai", "useBuildAI": True},
    )
    await svc.ownership.record_project(
        WALLET, project_id, unique_name="adjust-resume", display_name="Adjust resume"
    )
    # No credits at all: suspended by this run, or already by the app's own metering loop.
    await svc.metering.run_once()
    assert next(p for p in sim.projects() if p.id == project_id).suspended

    answer = await admin_gw.client.post(
        f"/admin/wallets/{WALLET}/adjust",
        json={"amount_usd": "1.00", "reason": "support credit"},
        headers=bearer(),
    )
    assert answer.status_code == 200 and answer.json()["resumed"] == [project_id]
    assert not next(p for p in sim.projects() if p.id == project_id).suspended
    assert (await svc.ledger.check_consistency(WALLET)).ok
