"""Payments that must not go through, from the CLI against the local stack: an RPC URL that
serves another chain (the client's own chain-id check refuses to sign anything), and a paid tx
the gateway will not credit (402 "Payment verification failed" with its ``reason``). Each ends
in a readable message and a non-zero exit code, and never in a second payment."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from eth_account import Account

from gateway.client.cli import ExitCode
from gateway.client.journal import FileJournal
from tests.client.conftest import LocalStack, pay_then_crash
from tests.client.test_cli import answer, cli_env, make_app, run_cli
from tests.client.test_never_pays_twice import small_upload


def test_rpc_url_of_another_chain_is_refused_before_signing(
    local_stack: LocalStack, tmp_path: Path
) -> None:
    agent = local_stack.funded_agent()
    env = cli_env(local_stack, agent, tmp_path / "state")
    env["AGENT_RPC_URL_ARBITRUM"] = local_stack.nodes["base"].url  # serves chain id 8453

    refused = run_cli(env, "deploy", str(make_app(tmp_path / "app")), "--name", "cli-wrong-rpc")

    assert refused.returncode == ExitCode.FAILED == 1, refused.stderr
    assert "402: 0.5 USD" in refused.stderr  # the quote was read...
    assert (
        "error: the RPC URL for arbitrum serves chain id 8453, not 42161; "
        "refusing to pay on the wrong chain" in refused.stderr
    )
    # ...and nothing was sent on either chain.
    assert local_stack.transfers_from(agent.address) == []
    for node in local_stack.nodes.values():
        assert node.rpc("eth_getTransactionCount", [agent.address, "latest"]) == "0x0"


@contextmanager
def gateway_paying_to(stack: LocalStack, pay_to: str) -> Iterator[None]:
    """The stack's gateway restarted with another payment address (an operator rotating
    ``GATEWAY_PAY_TO``), and restarted as it was afterwards."""
    gateway = stack.gateway
    before = gateway.env.get("GATEWAY_PAY_TO")
    gateway.kill()
    gateway.env["GATEWAY_PAY_TO"] = pay_to
    try:
        gateway.start()
        yield
    finally:
        gateway.kill()
        if before is None:
            gateway.env.pop("GATEWAY_PAY_TO", None)
        else:
            gateway.env["GATEWAY_PAY_TO"] = before
        gateway.start()


async def test_payment_the_gateway_rejects_exits_non_zero_and_is_not_paid_again(
    local_stack: LocalStack, tmp_path: Path
) -> None:
    """The agent paid the quoted address and died before submitting the tx; meanwhile the
    operator moved ``pay_to``. The resumed deploy submits the journalled tx, the gateway answers
    402 ``wrong_recipient``, and the CLI stops there: no payment of the new quote."""
    agent = local_stack.funded_agent()
    state = tmp_path / "state"
    env = cli_env(local_stack, agent, state)

    tx = await pay_then_crash(
        local_stack,
        agent,
        state / "payments.json",
        lambda client: client.start_deploy(small_upload(), name="cli-rejected-app"),
    )

    with gateway_paying_to(local_stack, Account.create().address):
        done = run_cli(
            env,
            "deploy",
            str(make_app(tmp_path / "app")),
            "--name",
            "cli-rejected-app",
            "--json",
        )

    rejected = answer(done, ExitCode.FAILED)
    assert rejected["kind"] == "PaymentRejected" and rejected["exit_code"] == 1
    assert rejected["tx"] == tx and rejected["reason"] == "wrong_recipient"
    assert rejected["error"].startswith(
        f"the gateway rejected payment {tx} on arbitrum (wrong_recipient): "
        "The USDC transfer did not go to the payment address"
    )
    assert rejected["error"].endswith("; nothing more was paid")
    assert f"retrying with the earlier payment {tx}" in done.stderr
    assert "paying" not in done.stderr
    assert len(local_stack.transfers_from(agent.address)) == 1
    entry = FileJournal(state / "payments.json").get(
        f"{local_stack.gateway.url}|{agent.address.lower()}|deploy:cli-rejected-app"
    )
    assert entry is not None and entry.tx is None  # forgotten: a deliberate rerun pays afresh
