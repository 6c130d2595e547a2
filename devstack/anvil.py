"""Launch and drive a local anvil chain: the real-but-local stand-in for Arbitrum One and Base.

Used by the pytest fixtures and by ``python -m gateway dev``; never by the request path. The
module is synchronous on purpose (fixtures and a CLI launcher), speaks JSON-RPC with ``httpx``
and encodes calls with ``eth_abi``/``eth_utils``; it does not import web3.

An :class:`AnvilNode` owns one ``anvil`` process started with the flags from docs/CHAINS.md section
6 (``--chain-id``, ``--slots-in-an-epoch 1`` so ``safe``/``finalized`` trail ``latest`` by 1/2
blocks, ``--silent``). Test contracts come from ``contracts/artifacts.json`` (compiled by
``contracts/compile.mjs``); :meth:`AnvilNode.install_test_tokens` puts the test ERC-20 at the
canonical USDC/USDT addresses so production token config runs unchanged.

Errors::

    RuntimeError
    ├── AnvilNotFound     no anvil binary (message says how to install one)
    ├── AnvilStartError   the process exited early or never answered eth_chainId
    └── AnvilRpcError     a JSON-RPC error answer (code, message, data)
"""

from __future__ import annotations

import functools
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
from eth_abi.abi import decode, encode
from eth_utils.abi import function_signature_to_4byte_selector
from eth_utils.address import to_checksum_address

CANONICAL_TOKENS: dict[int, dict[str, str]] = {
    42161: {
        "usdc": "0xaf88d065e77c8cC2239327C5EDb3A432268e5831",
        "usdt": "0xFd086bC7CD5C481DCC9C85ebE478A1C0b69FCbb9",
    },
    8453: {
        "usdc": "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
        "usdt": "0xfde4C96c8593536E31F229EA8f37b2ADa2699bb2",
    },
}
"""chain id -> token key -> checksummed token address, per docs/CHAINS.md section 1."""

TOKEN_CONTRACTS: dict[str, str] = {"usdc": "TestUsdc"}
"""token key -> the artifact installed at its address; keys not named get ``TestToken``."""

# Derived from the public mnemonic "test test test test test test test test test test test junk"
# at m/44'/60'/0'/0/i. Publicly known keys: local chains only.
ANVIL_ACCOUNTS: list[tuple[str, str]] = [
    (
        "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
        "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    ),
    (
        "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
        "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    ),
    (
        "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
        "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    ),
    (
        "0x90F79bf6EB2c4f870365E785982E1f101E93b906",
        "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    ),
    (
        "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65",
        "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    ),
    (
        "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc",
        "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    ),
    (
        "0x976EA74026E726554dB657fA54763abd0C3a0aa9",
        "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    ),
    (
        "0x14dC79964da2C08b23698B3D3cc7Ca32193d9955",
        "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    ),
    (
        "0x23618e81E3f5cdF7f54C3d65f7FBc0aBf5B21E8f",
        "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    ),
    (
        "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720",
        "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
    ),
]
"""(checksummed address, private key) of anvil's 10 default, unlocked accounts."""

ARTIFACTS_PATH = Path(__file__).parent / "contracts" / "artifacts.json"

READY_TIMEOUT_S = 10.0
BIND_ATTEMPTS = 5
# Explicit gas skips estimation, so a reverting call is always mined with status 0 (what revert
# tests need) at a predictable cost; anvil 1.7.1 would otherwise charge the whole 30M block
# gas limit when estimation reverts, and some nodes answer a JSON-RPC error instead.
DEFAULT_GAS = 500_000
# ETH an impersonated sender is topped up to before sending (anvil still charges gas).
IMPERSONATED_GAS_MONEY = 10**18
_RPC_TIMEOUT_S = 10.0
# Short, so a probe that reaches something other than a starting anvil cannot eat the budget.
_PROBE_TIMEOUT_S = 0.5
_LOG_TAIL_BYTES = 4_000
# anvil's message when its port is taken (Linux/macOS "Address already in use", Windows
# "Only one usage of each socket address").
_BIND_FAILURE_MARKERS = ("address already in use", "only one usage of each socket address")

_OS_NAMES = {"linux": "linux", "darwin": "darwin", "win32": "win32"}
_ARCH_NAMES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


class AnvilNotFound(RuntimeError):
    """No anvil binary at ANVIL_BIN, under node_modules, or on PATH."""


class AnvilStartError(RuntimeError):
    """anvil exited during start-up or did not answer ``eth_chainId`` in time."""


class AnvilRpcError(RuntimeError):
    """anvil answered a JSON-RPC error; ``str()`` carries anvil's message."""

    def __init__(self, method: str, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{method}: {message} (code {code})")
        self.method = method
        self.code = code
        self.message = message
        self.data = data


def _project_root() -> Path:
    """The repository root: the parent of the ``devstack`` package."""
    return Path(__file__).resolve().parents[1]


def _platform_package() -> tuple[str, str]:
    """(npm platform package name, binary file name) for this machine, e.g. anvil-linux-amd64."""
    os_name = _OS_NAMES.get(sys.platform, sys.platform)
    machine = platform.machine().lower()
    arch = _ARCH_NAMES.get(machine, machine)
    binary = "anvil.exe" if os_name == "win32" else "anvil"
    return f"anvil-{os_name}-{arch}", binary


def find_anvil_binary(
    project_root: Path | None = None, *, environ: Mapping[str, str] | None = None
) -> str:
    """Return the path of the anvil binary to run.

    Looks in order at ``ANVIL_BIN`` (which, when set, must name an existing file: a wrong
    setting is an error, not a reason to fall back), at
    ``node_modules/@foundry-rs/anvil-<os>-<arch>/bin/anvil`` under ``project_root`` (default: the
    repository root), then on ``PATH``. Raises :class:`AnvilNotFound` with install advice.
    """
    env = os.environ if environ is None else environ
    install_hint = (
        "install it with `npm install` in the project root (package.json pins "
        "@foundry-rs/anvil), or set ANVIL_BIN to an anvil binary"
    )

    configured = env.get("ANVIL_BIN")
    if configured:
        if Path(configured).is_file():
            return configured
        raise AnvilNotFound(f"ANVIL_BIN={configured!r} is not a file; {install_hint}")

    root = _project_root() if project_root is None else project_root
    package, binary = _platform_package()
    bundled = root / "node_modules" / "@foundry-rs" / package / "bin" / binary
    if bundled.is_file():
        return str(bundled)

    on_path = shutil.which("anvil", path=env.get("PATH"))
    if on_path:
        return on_path

    raise AnvilNotFound(f"anvil not found (looked at ANVIL_BIN, {bundled}, PATH); {install_hint}")


@functools.cache
def load_artifacts() -> dict[str, Any]:
    """The compiled test contracts: ``{name: {abi, bytecode, deployedBytecode, source}}``.

    Also holds ``_compiler`` (solc version and settings). Read once and shared: do not mutate.
    """
    artifacts: dict[str, Any] = json.loads(ARTIFACTS_PATH.read_text(encoding="utf-8"))
    return artifacts


def _artifact(contract_name: str) -> dict[str, Any]:
    artifacts = load_artifacts()
    if contract_name.startswith("_") or contract_name not in artifacts:
        known = ", ".join(sorted(k for k in artifacts if not k.startswith("_")))
        raise KeyError(f"no artifact {contract_name!r}; known: {known}")
    artifact: dict[str, Any] = artifacts[contract_name]
    return artifact


def _calldata(signature: str, types: list[str], args: list[Any]) -> str:
    selector = function_signature_to_4byte_selector(signature)
    return "0x" + (selector + encode(types, args)).hex()


def _bind_port(port: int) -> int:
    """Bind ``port`` (0: any free one) on 127.0.0.1 and release it; returns the port.

    Raises OSError when the port is taken. The port is released before anvil binds it, so
    another process can take it in between; start() retries when anvil reports that.
    SO_REUSEADDR, as anvil itself binds: connections of a node stopped a moment ago linger in
    TIME_WAIT, and only a listening process should count as taking the port.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        bound: int = sock.getsockname()[1]
        return bound


def _log_tail(log_path: Path) -> str:
    try:
        data = log_path.read_bytes()
    except OSError:
        return "<no log>"
    text = data[-_LOG_TAIL_BYTES:].decode("utf-8", errors="replace").strip()
    return text or "<empty log>"


class AnvilNode:
    """One running anvil process for one chain id, and helpers to drive it over JSON-RPC.

    Every helper that sends a transaction returns its hash; with automine on (the default) it
    returns only once the tx is mined, so its effects are visible at ``latest``. A revert shows
    as receipt status 0, never as an exception. With automine off, the tx is left pending.
    """

    chain_id: int
    port: int
    url: str
    log_path: Path
    process: subprocess.Popen[bytes]

    def __init__(
        self, chain_id: int, port: int, log_path: Path, process: subprocess.Popen[bytes]
    ) -> None:
        """Wrap an already-started process; use :meth:`start` to launch one."""
        self.chain_id = chain_id
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.process = process
        self._client = httpx.Client()
        self._request_id = 0

    # -- lifecycle -------------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        chain_id: int,
        *,
        log_dir: Path,
        port: int | None = None,
        slots_in_an_epoch: int = 1,
        block_time: float | None = None,
        binary: str | None = None,
    ) -> AnvilNode:
        """Start anvil on 127.0.0.1 and return once it answers ``eth_chainId``.

        Without ``port``, picks a free one and retries with a new port (up to 5 tries) when
        anvil reports the port taken. Output goes to ``log_dir/anvil-<chain>-<port>.log``.
        Raises :class:`AnvilNotFound` or :class:`AnvilStartError` (with the log tail).
        """
        executable = binary if binary is not None else find_anvil_binary()
        log_dir.mkdir(parents=True, exist_ok=True)
        if port is not None:
            # Checked up front: if another node already serves this port, anvil would exit but
            # the readiness probe could get its answer from the other node.
            try:
                _bind_port(port)
            except OSError as taken:
                raise AnvilStartError(f"port {port} is in use on 127.0.0.1: {taken}") from taken
        attempts = 1 if port is not None else BIND_ATTEMPTS
        last_error: AnvilStartError | None = None
        for _ in range(attempts):
            chosen = port if port is not None else _bind_port(0)
            log_path = log_dir / f"anvil-{chain_id}-{chosen}.log"
            command = [
                executable,
                "--host",
                "127.0.0.1",
                "--port",
                str(chosen),
                "--chain-id",
                str(chain_id),
                "--slots-in-an-epoch",
                str(slots_in_an_epoch),
                "--silent",
            ]
            if block_time is not None:
                command += ["--block-time", str(block_time)]
            with log_path.open("wb") as log_file:
                process = subprocess.Popen(
                    command, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT
                )
            node = cls(chain_id, chosen, log_path, process)
            try:
                node._wait_until_ready()
            except AnvilStartError as error:
                node.stop()
                last_error = error
                log = _log_tail(log_path).lower()
                if not any(marker in log for marker in _BIND_FAILURE_MARKERS):
                    raise
                continue
            except BaseException:
                node.stop()
                raise
            return node
        assert last_error is not None
        raise last_error

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            exit_code = self.process.poll()
            if exit_code is not None:
                raise AnvilStartError(
                    f"anvil (chain {self.chain_id}, port {self.port}) exited with code "
                    f"{exit_code} during start-up; log {self.log_path}:\n{_log_tail(self.log_path)}"
                )
            try:
                answered = int(self._request("eth_chainId", [], timeout=_PROBE_TIMEOUT_S), 16)
            except (httpx.HTTPError, ValueError, AnvilRpcError):
                # Not up yet, or not anvil answering: keep polling until exit or deadline.
                answered = None
            if answered is not None:
                if answered != self.chain_id:
                    raise AnvilStartError(
                        f"anvil on port {self.port} reports chain {answered}, "
                        f"expected {self.chain_id}"
                    )
                return
            if time.monotonic() >= deadline:
                raise AnvilStartError(
                    f"anvil (chain {self.chain_id}, port {self.port}) did not answer "
                    f"eth_chainId within {READY_TIMEOUT_S:.0f} s; log {self.log_path}:\n"
                    f"{_log_tail(self.log_path)}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the process (terminate, wait 5 s, then kill) and close the HTTP client."""
        self._client.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- JSON-RPC --------------------------------------------------------------------------

    def rpc(self, method: str, params: list[Any] | None = None) -> Any:
        """Call ``method`` and return its ``result``; raises :class:`AnvilRpcError` on error."""
        return self._request(method, params or [], timeout=_RPC_TIMEOUT_S)

    def _request(self, method: str, params: list[Any], *, timeout: float) -> Any:
        self._request_id += 1
        body = {"jsonrpc": "2.0", "id": self._request_id, "method": method, "params": params}
        response = self._client.post(self.url, json=body, timeout=timeout)
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        if "error" in answer:
            error = answer["error"]
            raise AnvilRpcError(
                method, int(error.get("code", 0)), str(error.get("message")), error.get("data")
            )
        return answer.get("result")

    def call(self, to: str, data: str) -> str:
        """``eth_call`` at ``latest``; returns the raw hex result."""
        result: str = self.rpc("eth_call", [{"to": to, "data": data}, "latest"])
        return result

    def receipt(self, tx_hash: str) -> dict[str, Any] | None:
        """The transaction receipt, or None while pending or unknown."""
        result: dict[str, Any] | None = self.rpc("eth_getTransactionReceipt", [tx_hash])
        return result

    def mine(self, blocks: int = 1) -> None:
        self.rpc("anvil_mine", [hex(blocks)])

    def snapshot(self) -> str:
        """Take an ``evm_snapshot``; its id is consumed by :meth:`revert`."""
        snapshot_id: str = self.rpc("evm_snapshot")
        return snapshot_id

    def revert(self, snapshot_id: str) -> bool:
        """Return the chain to ``snapshot_id``; True if anvil knew the id."""
        return bool(self.rpc("evm_revert", [snapshot_id]))

    def set_automine(self, on: bool) -> None:
        """Switch automine; with it off, sent transactions stay pending until :meth:`mine`."""
        self.rpc("evm_setAutomine", [on])

    def set_balance(self, address: str, wei: int) -> None:
        """Set an account's ETH balance (e.g. gas money for an impersonated account)."""
        self.rpc("anvil_setBalance", [address, hex(wei)])

    # -- contracts -------------------------------------------------------------------------

    def set_code(self, address: str, contract_name: str) -> None:
        """Put an artifact's runtime bytecode at ``address`` (no constructor runs)."""
        self.rpc("anvil_setCode", [address, _artifact(contract_name)["deployedBytecode"]])

    def install_test_tokens(self) -> dict[str, str]:
        """Install the test tokens at this chain's canonical addresses; returns key -> address.

        USDC gets ``TestUsdc`` (EIP-3009 and EIP-2612 with the real USDC EIP-712 domain), every
        other token the plain ``TestToken``; both share the storage layout of ``TestErc20``.
        """
        tokens = CANONICAL_TOKENS.get(self.chain_id)
        if tokens is None:
            raise KeyError(f"no canonical tokens for chain {self.chain_id}")
        for key, address in tokens.items():
            self.set_code(address, TOKEN_CONTRACTS.get(key, "TestToken"))
        return dict(tokens)

    def deploy(self, contract_name: str, sender: str | None = None) -> str:
        """Deploy an artifact from an unlocked account (default #0); returns its address.

        Needs automine on: it waits for the receipt and raises if the deployment failed.
        """
        tx_hash = self._send(
            {"from": sender or ANVIL_ACCOUNTS[0][0], "data": _artifact(contract_name)["bytecode"]}
        )
        receipt = self._wait_for_receipt(tx_hash)
        if int(receipt["status"], 16) != 1 or not receipt.get("contractAddress"):
            raise RuntimeError(f"deploying {contract_name} failed: tx {tx_hash}")
        return to_checksum_address(receipt["contractAddress"])

    def _wait_for_receipt(self, tx_hash: str, timeout_s: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while (receipt := self.receipt(tx_hash)) is None:
            if time.monotonic() >= deadline:
                raise RuntimeError(f"tx {tx_hash} not mined within {timeout_s} s (automine off?)")
            time.sleep(0.02)
        return receipt

    # -- transactions ----------------------------------------------------------------------

    def send_transaction(
        self,
        sender: str,
        to: str,
        data: str,
        value: int = 0,
        *,
        impersonate: bool = False,
        gas: int = DEFAULT_GAS,
    ) -> str:
        """``eth_sendTransaction`` from ``sender``; returns the tx hash.

        ``sender`` must be one of anvil's unlocked accounts unless ``impersonate`` is set, in
        which case it is impersonated for this one transaction (any address, a contract
        included) and, since impersonation does not waive gas fees, first topped up to 1 ETH if
        it holds less. ``gas`` is explicit so a reverting transaction is mined with status 0
        instead of failing estimation.
        """
        tx = {"from": sender, "to": to, "data": data, "value": hex(value), "gas": hex(gas)}
        if not impersonate:
            return self._send(tx)
        if int(self.rpc("eth_getBalance", [sender, "latest"]), 16) < IMPERSONATED_GAS_MONEY:
            self.set_balance(sender, IMPERSONATED_GAS_MONEY)
        self.rpc("anvil_impersonateAccount", [sender])
        try:
            return self._send(tx)
        finally:
            self.rpc("anvil_stopImpersonatingAccount", [sender])

    def _send(self, tx: dict[str, str]) -> str:
        """``eth_sendTransaction``; with automine on, returns only once the receipt exists.

        anvil answers with the hash a moment before the automined block is stored (receipt
        null, ``latest`` not yet moved: foundry-rs/foundry#3537), so without this wait a
        following snapshot or read can land before the transaction.
        """
        tx_hash: str = self.rpc("eth_sendTransaction", [tx])
        if self.rpc("anvil_getAutomine"):
            self._wait_for_receipt(tx_hash)
        return tx_hash

    def mint(self, token: str, to: str, amount: int) -> str:
        """Call the test token's open ``mint`` from account #0; returns the tx hash."""
        data = _calldata("mint(address,uint256)", ["address", "uint256"], [to, amount])
        return self.send_transaction(ANVIL_ACCOUNTS[0][0], token, data)

    def transfer(
        self, token: str, sender: str, to: str, amount: int, *, impersonate: bool = False
    ) -> str:
        """ERC-20 ``transfer`` from ``sender``; returns the tx hash, even when it reverts."""
        data = _calldata("transfer(address,uint256)", ["address", "uint256"], [to, amount])
        return self.send_transaction(sender, token, data, impersonate=impersonate)

    def balance_of(self, token: str, holder: str) -> int:
        data = _calldata("balanceOf(address)", ["address"], [holder])
        (balance,) = decode(["uint256"], bytes.fromhex(self.call(token, data)[2:]))
        return int(balance)
