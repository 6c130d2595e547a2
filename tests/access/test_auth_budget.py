"""docs/PROTOCOL.md section 5: failed authentications draw on a budget per client IP, whatever
wallet they claim, and a bad signature for an address known to have no code costs no RPC call.
Against a served gateway (``python -m gateway serve``) with real Redis and anvil; the second client
IP is a real one (127.0.0.2, another loopback source address), not a forwarded header."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from devstack.anvil import AnvilNode
from devstack.gateway_process import GatewayProcess
from gateway.client.signing import auth_headers
from tests.support import metric_value, served_gateway

ROUTE = "/agent/credits"
BUDGET = 10
RPC_SERIES = 'gateway_rpc_request_seconds_count{chain="arbitrum",operation="is_valid_signature"}'


@pytest.fixture
def served(
    tmp_path: Path, redis_url: str, key_prefix: str, sim_url: str, chains: dict[str, AnvilNode]
) -> Iterator[GatewayProcess]:
    # An hour-long failure window: the budget does not refill while the test runs, so the
    # counts below do not depend on how fast this machine is.
    changes = {
        "rate_limit.failed_auth_requests": BUDGET,
        "rate_limit.failed_auth_window_seconds": 3600,
    }
    rpc = {name: node.url for name, node in chains.items()}
    with served_gateway(tmp_path, redis_url, key_prefix, sim_url, rpc, changes) as gateway:
        yield gateway


def junk_headers(wallet: str) -> dict[str, str]:
    """A well-formed request for ``wallet`` whose 65-byte signature is random junk."""
    return {
        "X-Wallet-Address": wallet,
        "X-Signature": "0x" + os.urandom(65).hex(),
        "X-Timestamp": str(int(time.time() * 1000)),
        "X-Nonce": uuid.uuid4().hex,
    }


def rpc_calls(http: httpx.Client) -> float:
    return metric_value(http.get("/metrics").text, RPC_SERIES)


def test_rotating_wallets_with_junk_signatures_hit_the_ip_budget_not_the_rpc(
    served: GatewayProcess,
) -> None:
    with (
        httpx.Client(base_url=served.url, timeout=30) as attacker,
        httpx.Client(
            base_url=served.url,
            timeout=30,
            transport=httpx.HTTPTransport(local_address="127.0.0.2"),
        ) as elsewhere,
    ):
        before = rpc_calls(attacker)
        codes = [
            attacker.get(ROUTE, headers=junk_headers(Account.create().address)).status_code
            for _ in range(60)
        ]
        spent = rpc_calls(attacker) - before

        assert codes[:BUDGET] == [401] * BUDGET
        assert codes[BUDGET:] == [429] * (60 - BUDGET)
        assert spent == BUDGET  # one eth_getCode per admitted failure, none after: not 60

        # A real wallet from another IP is unaffected.
        honest = Account.create()
        answer = elsewhere.get(ROUTE, headers=auth_headers(honest))
        assert answer.status_code == 200, answer.text

        # Honest wallets behind the attacker's NAT keep their documented 30 a minute each.
        for account in [Account.create() for _ in range(3)]:
            for _ in range(30):
                answer = attacker.get(ROUTE, headers=auth_headers(account))
                assert answer.status_code == 200, answer.text
        assert rpc_calls(attacker) - before == BUDGET


def test_a_bad_signature_for_an_address_without_code_costs_one_rpc_call(
    served: GatewayProcess,
) -> None:
    wallet = Account.create().address  # no code on the default chain
    with httpx.Client(base_url=served.url, timeout=30) as http:
        before = rpc_calls(http)
        for _ in range(3):
            assert http.get(ROUTE, headers=junk_headers(wallet)).status_code == 401
        assert rpc_calls(http) - before == 1


def test_accepted_contract_wallets_give_their_charge_back(
    served: GatewayProcess, arbitrum: AnvilNode, agent: LocalAccount
) -> None:
    """A contract wallet is charged to the failure budget before its EIP-1271 call and refunded
    when the contract vouches: more accepted requests than the budget, none limited."""
    wallet = arbitrum.deploy("AlwaysValidWallet")
    with httpx.Client(base_url=served.url, timeout=30) as http:
        for _ in range(BUDGET + 5):
            answer = http.get(ROUTE, headers=auth_headers(agent, address=wallet))
            assert answer.status_code == 200, answer.text
        # The budget is whole: BUDGET failures still get their 401 before any 429.
        codes = [
            http.get(ROUTE, headers=junk_headers(Account.create().address)).status_code
            for _ in range(BUDGET + 1)
        ]
        assert codes == [401] * BUDGET + [429]
