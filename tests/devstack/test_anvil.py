"""The anvil launcher and the test contracts, against real anvil processes (42161 and 8453)."""

from __future__ import annotations

import json
import os
import socket
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_abi.abi import decode, encode
from eth_utils.abi import function_signature_to_4byte_selector
from eth_utils.crypto import keccak

from devstack import anvil as anvil_module
from devstack.anvil import (
    ANVIL_ACCOUNTS,
    CANONICAL_TOKENS,
    AnvilNode,
    AnvilNotFound,
    AnvilStartError,
    find_anvil_binary,
    load_artifacts,
)

TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
ERC1271_MAGIC = "1626ba7e"
REPO_ROOT = Path(__file__).resolve().parents[2]

ALICE = ANVIL_ACCOUNTS[1][0]
BOB = ANVIL_ACCOUNTS[2][0]


def calldata(signature: str, types: list[str], args: list[Any]) -> str:
    return "0x" + (function_signature_to_4byte_selector(signature) + encode(types, args)).hex()


def topic_address(topic: str) -> str:
    """The address in the last 20 of a topic's 32 bytes, lowercase."""
    return "0x" + topic[-40:].lower()


def _start(chain_id: int, log_dir: Path) -> AnvilNode:
    try:
        find_anvil_binary()
    except AnvilNotFound as missing:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(missing))
    return AnvilNode.start(chain_id, log_dir=log_dir)


@pytest.fixture(scope="module")
def arbitrum(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnvilNode]:
    with _start(42161, tmp_path_factory.mktemp("anvil-arbitrum")) as node:
        node.install_test_tokens()
        yield node


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnvilNode]:
    with _start(8453, tmp_path_factory.mktemp("anvil-base")) as node:
        node.install_test_tokens()
        yield node


@pytest.fixture(autouse=True)
def _isolated(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test that uses a chain sees it as the module fixture left it."""
    nodes = [
        request.getfixturevalue(name)
        for name in ("arbitrum", "base")
        if name in request.fixturenames
    ]
    snapshots = [(node, node.snapshot()) for node in nodes]
    yield
    for node, snapshot_id in snapshots:
        assert node.revert(snapshot_id)


@pytest.fixture
def usdc(arbitrum: AnvilNode) -> str:
    return CANONICAL_TOKENS[42161]["usdc"]


# -- the node ------------------------------------------------------------------------------


def test_nodes_report_their_chain_ids(arbitrum: AnvilNode, base: AnvilNode) -> None:
    assert int(arbitrum.rpc("eth_chainId"), 16) == 42161
    assert int(base.rpc("eth_chainId"), 16) == 8453
    assert arbitrum.url == f"http://127.0.0.1:{arbitrum.port}"
    assert arbitrum.port != base.port
    assert arbitrum.log_path.is_file()


def test_safe_and_finalized_trail_latest_by_one_and_two_blocks(arbitrum: AnvilNode) -> None:
    arbitrum.mine(3)
    latest = int(arbitrum.rpc("eth_blockNumber"), 16)
    safe = arbitrum.rpc("eth_getBlockByNumber", ["safe", False])
    finalized = arbitrum.rpc("eth_getBlockByNumber", ["finalized", False])
    assert int(safe["number"], 16) == latest - 1
    assert int(finalized["number"], 16) == latest - 2


def test_rpc_error_carries_anvils_message(arbitrum: AnvilNode) -> None:
    with pytest.raises(RuntimeError, match=r"no_such_method|not supported|Method not found"):
        arbitrum.rpc("no_such_method")


# -- test tokens ---------------------------------------------------------------------------


@pytest.mark.parametrize("chain", ["arbitrum", "base"])
def test_test_tokens_sit_at_canonical_addresses_with_6_decimals(
    chain: str, request: pytest.FixtureRequest
) -> None:
    node: AnvilNode = request.getfixturevalue(chain)
    installed = node.install_test_tokens()
    assert installed == CANONICAL_TOKENS[node.chain_id]
    assert set(installed) == {"usdc", "usdt"}
    for address in installed.values():
        code = node.rpc("eth_getCode", [address, "latest"])
        assert len(code) > 2
        (decimals,) = decode(
            ["uint8"], bytes.fromhex(node.call(address, calldata("decimals()", [], []))[2:])
        )
        assert decimals == 6


def test_balance_lives_at_mapping_slot_0(arbitrum: AnvilNode, usdc: str) -> None:
    slot = keccak(encode(["address", "uint256"], [ALICE, 0]))
    arbitrum.rpc("anvil_setStorageAt", [usdc, "0x" + slot.hex(), "0x" + (1234).to_bytes(32).hex()])
    assert arbitrum.balance_of(usdc, ALICE) == 1234


def test_mint_then_transfer_moves_balances(arbitrum: AnvilNode, usdc: str) -> None:
    mint_receipt = arbitrum.receipt(arbitrum.mint(usdc, ALICE, 5_000_000))
    assert mint_receipt is not None and mint_receipt["status"] == "0x1"
    (mint_log,) = mint_receipt["logs"]
    assert topic_address(mint_log["topics"][1]) == "0x" + "00" * 20

    tx_hash = arbitrum.transfer(usdc, ALICE, BOB, 1_250_000)

    assert arbitrum.balance_of(usdc, ALICE) == 3_750_000
    assert arbitrum.balance_of(usdc, BOB) == 1_250_000
    receipt = arbitrum.receipt(tx_hash)
    assert receipt is not None and receipt["status"] == "0x1"
    (log,) = receipt["logs"]
    assert log["address"].lower() == usdc.lower()
    assert log["topics"][0] == TRANSFER_TOPIC
    assert topic_address(log["topics"][1]) == ALICE.lower()
    assert topic_address(log["topics"][2]) == BOB.lower()
    assert int(log["data"], 16) == 1_250_000


def test_transfer_beyond_balance_is_mined_with_status_0(arbitrum: AnvilNode, usdc: str) -> None:
    arbitrum.mint(usdc, ALICE, 100)

    tx_hash = arbitrum.transfer(usdc, ALICE, BOB, 101)

    receipt = arbitrum.receipt(tx_hash)
    assert receipt is not None
    assert receipt["status"] == "0x0"
    assert receipt["logs"] == []
    assert arbitrum.balance_of(usdc, ALICE) == 100


def test_automine_off_leaves_a_transfer_pending(arbitrum: AnvilNode, usdc: str) -> None:
    arbitrum.mint(usdc, ALICE, 10)
    arbitrum.set_automine(False)
    try:
        tx_hash = arbitrum.transfer(usdc, ALICE, BOB, 10)
        assert arbitrum.receipt(tx_hash) is None
        arbitrum.mine()
        receipt = arbitrum.receipt(tx_hash)
        assert receipt is not None and receipt["status"] == "0x1"
    finally:
        arbitrum.set_automine(True)


def test_snapshot_and_revert_restore_a_balance(base: AnvilNode) -> None:
    usdt = CANONICAL_TOKENS[8453]["usdt"]
    base.mint(usdt, ALICE, 7)
    snapshot_id = base.snapshot()
    base.transfer(usdt, ALICE, BOB, 7)
    assert base.balance_of(usdt, ALICE) == 0

    assert base.revert(snapshot_id)

    assert base.balance_of(usdt, ALICE) == 7
    assert base.balance_of(usdt, BOB) == 0
    assert not base.revert(snapshot_id), "a revert consumes the snapshot id"


# -- look-alike Transfer emitter -----------------------------------------------------------


def test_emitter_emits_an_erc20_shaped_transfer_from_its_own_address(
    arbitrum: AnvilNode,
) -> None:
    emitter = arbitrum.deploy("TransferEmitter")
    data = calldata(
        "emitTransfer(address,address,uint256)", ["address", "address", "uint256"], [ALICE, BOB, 42]
    )

    receipt = arbitrum.receipt(arbitrum.send_transaction(ANVIL_ACCOUNTS[0][0], emitter, data))

    assert receipt is not None and receipt["status"] == "0x1"
    (log,) = receipt["logs"]
    assert log["address"].lower() == emitter.lower()
    assert log["topics"] == [
        TRANSFER_TOPIC,
        "0x" + "00" * 12 + ALICE[2:].lower(),
        "0x" + "00" * 12 + BOB[2:].lower(),
    ]
    assert log["data"] == "0x" + (42).to_bytes(32).hex()


def test_emitter_emits_erc721_and_odd_data_transfers(arbitrum: AnvilNode) -> None:
    emitter = arbitrum.deploy("TransferEmitter")
    sender = ANVIL_ACCOUNTS[0][0]
    nft = calldata(
        "emitNftTransfer(address,address,uint256)",
        ["address", "address", "uint256"],
        [ALICE, BOB, 7],
    )
    raw = calldata(
        "emitRawTransfer(address,address,bytes)",
        ["address", "address", "bytes"],
        [ALICE, BOB, b"\x01" * 5],
    )

    nft_receipt = arbitrum.receipt(arbitrum.send_transaction(sender, emitter, nft))
    raw_receipt = arbitrum.receipt(arbitrum.send_transaction(sender, emitter, raw))

    assert nft_receipt is not None and raw_receipt is not None
    (nft_log,) = nft_receipt["logs"]
    assert len(nft_log["topics"]) == 4 and nft_log["topics"][0] == TRANSFER_TOPIC
    assert int(nft_log["topics"][3], 16) == 7 and nft_log["data"] == "0x"
    (raw_log,) = raw_receipt["logs"]
    assert len(raw_log["topics"]) == 3 and raw_log["topics"][0] == TRANSFER_TOPIC
    assert raw_log["data"] == "0x" + "01" * 5


# -- EIP-1271 wallets ----------------------------------------------------------------------


def _is_valid_signature(node: AnvilNode, wallet: str) -> str:
    data = calldata(
        "isValidSignature(bytes32,bytes)", ["bytes32", "bytes"], [b"\x11" * 32, b"\x22" * 65]
    )
    result = node.call(wallet, data)
    return result[2:10]


def test_erc1271_wallets_answer_as_named(base: AnvilNode) -> None:
    always = base.deploy("AlwaysValidWallet")
    never = base.deploy("NeverValidWallet")
    assert _is_valid_signature(base, always) == ERC1271_MAGIC
    assert _is_valid_signature(base, never) == "ffffffff"


def test_set_code_installs_a_wallet_at_any_address(base: AnvilNode) -> None:
    address = "0x000000000000000000000000000000000000c0DE"
    base.set_code(address, "AlwaysValidWallet")
    assert _is_valid_signature(base, address) == ERC1271_MAGIC


def test_contract_wallet_pays_through_execute_and_by_impersonation(
    arbitrum: AnvilNode, usdc: str
) -> None:
    wallet = arbitrum.deploy("AlwaysValidWallet")
    arbitrum.mint(usdc, wallet, 100)
    transfer = calldata("transfer(address,uint256)", ["address", "uint256"], [BOB, 30])
    execute = calldata(
        "execute(address,bytes)", ["address", "bytes"], [usdc, bytes.fromhex(transfer[2:])]
    )

    via_execute = arbitrum.receipt(arbitrum.send_transaction(ANVIL_ACCOUNTS[0][0], wallet, execute))
    impersonated = arbitrum.receipt(arbitrum.transfer(usdc, wallet, BOB, 20, impersonate=True))

    for receipt in (via_execute, impersonated):
        assert receipt is not None and receipt["status"] == "0x1"
        (log,) = receipt["logs"]
        assert topic_address(log["topics"][1]) == wallet.lower()
    assert via_execute is not None and via_execute["from"].lower() != wallet.lower()
    assert arbitrum.balance_of(usdc, wallet) == 50
    assert arbitrum.balance_of(usdc, BOB) == 50


# -- artifacts and ABIs --------------------------------------------------------------------


def test_artifacts_hold_every_contract_compiled_with_the_pinned_solc() -> None:
    artifacts = load_artifacts()
    assert artifacts["_compiler"]["solc"].startswith("0.8.28+")
    for name in (
        "TestToken",
        "TestUsdc",
        "TransferEmitter",
        "AlwaysValidWallet",
        "NeverValidWallet",
    ):
        assert artifacts[name]["deployedBytecode"].startswith("0x")
        assert len(artifacts[name]["bytecode"]) > len(artifacts[name]["deployedBytecode"])


def test_production_abis_match_the_test_contracts() -> None:
    def signatures(abi: list[dict[str, Any]]) -> set[str]:
        return {
            f"{e['type']} {e['name']}({','.join(i['type'] for i in e['inputs'])})"
            for e in abi
            if e["type"] in ("function", "event")
        }

    artifacts = load_artifacts()
    erc20 = json.loads((REPO_ROOT / "gateway" / "abi" / "erc20.json").read_text())
    erc1271 = json.loads((REPO_ROOT / "gateway" / "abi" / "erc1271.json").read_text())
    assert signatures(erc20) <= signatures(artifacts["TestToken"]["abi"])
    assert "function balanceOf(address)" in signatures(erc20)
    assert "event Transfer(address,address,uint256)" in signatures(erc20)
    assert signatures(erc1271) == {"function isValidSignature(bytes32,bytes)"}
    assert signatures(erc1271) <= signatures(artifacts["NeverValidWallet"]["abi"])


# -- finding and starting the binary -------------------------------------------------------


def test_missing_anvil_bin_raises_anvil_not_found_with_install_advice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "no-such-anvil"
    monkeypatch.setenv("ANVIL_BIN", str(missing))

    with pytest.raises(AnvilNotFound) as raised:
        find_anvil_binary()

    message = str(raised.value)
    assert str(missing) in message
    assert "npm install" in message and "ANVIL_BIN" in message


def test_bundled_binary_is_found_under_node_modules(tmp_path: Path) -> None:
    found = find_anvil_binary(REPO_ROOT, environ={"PATH": str(tmp_path)})
    if not Path(found).is_file():
        pytest.fail(f"not a file: {found}")
    assert "node_modules" in found


def test_nothing_anywhere_raises_anvil_not_found(tmp_path: Path) -> None:
    with pytest.raises(AnvilNotFound, match="npm install"):
        find_anvil_binary(tmp_path, environ={"PATH": str(tmp_path)})


@pytest.mark.skipif(sys.platform == "win32", reason="uses a shell script as the binary")
def test_start_reports_the_log_when_anvil_exits_early(tmp_path: Path) -> None:
    fake = tmp_path / "anvil"
    fake.write_text("#!/bin/sh\necho 'boom: bad flag' >&2\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)

    with pytest.raises(AnvilStartError, match=r"(?s)code 3.*boom: bad flag"):
        AnvilNode.start(42161, log_dir=tmp_path / "logs", binary=str(fake))


def test_start_on_a_taken_port_reports_it(tmp_path: Path) -> None:
    try:
        binary = find_anvil_binary()
    except AnvilNotFound as missing:
        pytest.skip(str(missing))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(AnvilStartError, match=r"(?i)in use"):
            AnvilNode.start(42161, log_dir=tmp_path, port=port, binary=binary)


def test_a_fixed_port_is_free_again_right_after_its_node_stopped(tmp_path: Path) -> None:
    """The connections of a stopped node linger in TIME_WAIT; only a listener takes a port,
    so ``python -m gateway dev`` can run again at once on its fixed ports."""
    try:
        binary = find_anvil_binary()
    except AnvilNotFound as missing:
        pytest.skip(str(missing))
    with (
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as client,
        AnvilNode.start(42161, log_dir=tmp_path, binary=binary) as first,
    ):
        port = first.port
        # A keep-alive connection the node closes first when it stops, as a gateway's pooled
        # RPC connection is: its end stays in TIME_WAIT on the node's port.
        client.connect(("127.0.0.1", port))
        body = b'{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}'
        client.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        assert b"200" in client.recv(4096)
    with AnvilNode.start(42161, log_dir=tmp_path, port=port, binary=binary) as again:
        assert int(again.rpc("eth_chainId"), 16) == 42161


def test_start_retries_on_a_fresh_port_when_anvil_loses_the_bind_race(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The race (a port free when probed, taken when anvil binds) cannot be staged for real, so
    # the first probe is made to hand out a port that is already held.
    try:
        binary = find_anvil_binary()
    except AnvilNotFound as missing:
        pytest.skip(str(missing))
    real_bind_port = anvil_module._bind_port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        taken_port = taken.getsockname()[1]
        handed_out = iter([taken_port])
        monkeypatch.setattr(
            anvil_module, "_bind_port", lambda port: next(handed_out, None) or real_bind_port(port)
        )

        with AnvilNode.start(8453, log_dir=tmp_path, binary=binary) as node:
            assert node.port != taken_port
            assert int(node.rpc("eth_chainId"), 16) == 8453
        assert "in use" in (tmp_path / f"anvil-8453-{taken_port}.log").read_text().lower()
