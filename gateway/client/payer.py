"""Paying a quote on-chain: one ERC-20 ``transfer`` signed locally and sent through an RPC URL.

The only web3 importer of the client. ``TokenPayer`` checks that the RPC serves the quoted chain
id before it signs anything, checks the balance, sends, and waits for the receipt; web3 and
transport errors become ``NoRpcForChain``/``TransferFailed``/``InsufficientFunds`` here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import aiohttp
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.exceptions import TimeExhausted, Web3Exception

from gateway.client.errors import InsufficientFunds, NoRpcForChain, TransferFailed

ERC20_ABI: list[dict[str, Any]] = [
    {
        "type": "function",
        "name": "transfer",
        "stateMutability": "nonpayable",
        "inputs": [{"name": "to", "type": "address"}, {"name": "value", "type": "uint256"}],
        "outputs": [{"name": "", "type": "bool"}],
    },
    {
        "type": "function",
        "name": "balanceOf",
        "stateMutability": "view",
        "inputs": [{"name": "owner", "type": "address"}],
        "outputs": [{"name": "", "type": "uint256"}],
    },
]

RPC_TIMEOUT_SECONDS = 15.0


@contextlib.contextmanager
def _rpc_errors(chain: str, tx: str | None = None) -> Iterator[None]:
    """web3, aiohttp and socket errors of one RPC step, as ``TransferFailed``."""
    try:
        yield
    except TimeExhausted as exc:
        raise TransferFailed(f"no receipt for {tx} on {chain} in time: {exc}", tx) from exc
    except (Web3Exception, aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
        raise TransferFailed(f"RPC error on {chain}: {exc}", tx) from exc


class TokenPayer:
    """Sends ERC-20 transfers from ``account`` through ``rpc_urls`` (chain name -> URL)."""

    def __init__(
        self,
        account: LocalAccount,
        rpc_urls: Mapping[str, str],
        *,
        receipt_timeout_seconds: float = 120.0,
        poll_seconds: float = 0.5,
    ) -> None:
        self._account = account
        self._rpc_urls = {name.lower(): url for name, url in rpc_urls.items()}
        self._receipt_timeout = receipt_timeout_seconds
        self._poll = poll_seconds

    def _web3(self, chain: str) -> AsyncWeb3[Any]:
        url = self._rpc_urls.get(chain.lower())
        if not url:
            raise NoRpcForChain(
                f"no RPC URL for {chain}: set AGENT_RPC_URL_{chain.upper()} (or AGENT_RPC_URL)"
            )
        return AsyncWeb3(AsyncHTTPProvider(url, request_kwargs={"timeout": RPC_TIMEOUT_SECONDS}))

    async def send(
        self, *, chain: str, chain_id: int, token: str, pay_to: str, amount: int
    ) -> tuple[AsyncWeb3[Any], str]:
        """Sign and send ``transfer(pay_to, amount)`` on ``token``; returns the tx hash (0x hex).

        Raises ``NoRpcForChain`` when the RPC serves another chain id, ``InsufficientFunds``
        when the balance is short, ``TransferFailed`` when sending fails.
        """
        w3 = self._web3(chain)
        with _rpc_errors(chain):
            served = await w3.eth.chain_id
            if served != chain_id:
                raise NoRpcForChain(
                    f"the RPC URL for {chain} serves chain id {served}, not {chain_id}; "
                    "refusing to pay on the wrong chain"
                )
            contract = w3.eth.contract(address=to_checksum_address(token), abi=ERC20_ABI)
            balance = int(await contract.functions.balanceOf(self._account.address).call())
            if balance < amount:
                raise InsufficientFunds(
                    f"{self._account.address} holds {balance} base units of {token} on {chain}, "
                    f"the quote needs {amount}"
                )
            nonce = await w3.eth.get_transaction_count(self._account.address, "pending")
            tx = await contract.functions.transfer(
                to_checksum_address(pay_to), amount
            ).build_transaction({"from": self._account.address, "nonce": nonce, "chainId": served})
            signed = self._account.sign_transaction(tx)  # type: ignore[arg-type]
            sent = await w3.eth.send_raw_transaction(signed.raw_transaction)
        return w3, "0x" + bytes(sent).hex().removeprefix("0x")

    async def wait_for_receipt(self, w3: AsyncWeb3[Any], chain: str, tx: str) -> int:
        """Wait until ``tx`` is mined; returns its block number. Raises ``TransferFailed``
        when it reverted (status 0) or no receipt came within the timeout."""
        with _rpc_errors(chain, tx):
            receipt = await w3.eth.wait_for_transaction_receipt(
                tx,  # type: ignore[arg-type]
                timeout=self._receipt_timeout,
                poll_latency=self._poll,
            )
        if receipt["status"] != 1:
            raise TransferFailed(f"the transfer {tx} reverted on {chain}", tx)
        return int(receipt["blockNumber"])

    async def close(self, w3: AsyncWeb3[Any]) -> None:
        provider = w3.provider
        if isinstance(provider, AsyncHTTPProvider):
            await provider.disconnect()
