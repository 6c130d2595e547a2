"""Chain adapter: reads from each configured chain over its RPC URLs, with failover.

The only importer of web3 and aiohttp. Everything returned is our own plain data (``Receipt``,
``TransferLog``, ``BlockFacts``); web3 types and exceptions stop here.

Failover: every chain has its URLs in configured order. A call tries them in order, healthy ones
first; a URL that failed is benched for ``bench_seconds`` (still tried, but last). A URL whose
``eth_chainId`` differs from the configured id is never used. When no URL answers, the call raises
``Unavailable`` (503) and nothing has changed on our side.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, TypeVar

import aiohttp
from eth_account.messages import defunct_hash_message
from web3 import AsyncHTTPProvider, AsyncWeb3, Web3
from web3._utils.http_session_manager import HTTPSessionManager
from web3.exceptions import ContractLogicError, TransactionNotFound, Web3Exception, Web3RPCError
from web3.types import RPCEndpoint

from gateway import bounded_json
from gateway.config import ChainConfig, TokenConfig
from gateway.errors import Unavailable
from gateway.headers import RETRY_AFTER
from gateway.metrics import GatewayMetrics
from gateway.types import Clock, ContractSignature, system_clock

log = logging.getLogger("gateway.chains")

#: CPython's default. Importing eth_account pulls in py_ecc (through eth_keyfile and eth_keys'
#: pure-Python backend, which we never use: coincurve signs and recovers), and py_ecc raises the
#: process-wide limit to 100,000 at import for its BLS code. With that limit a deep recursion in
#: C code (the stdlib JSON decoder, ``repr``, ``json.dumps``) overflows the C stack, a segfault
#: of the whole process, long before it could raise ``RecursionError``. Put back here, in the
#: only module that imports the eth stack, so any recursion we missed fails as an exception of
#: one request. Untrusted JSON does not depend on it (``gateway.bounded_json``).
RECURSION_LIMIT = 1000
sys.setrecursionlimit(RECURSION_LIMIT)

T = TypeVar("T")
_W3 = AsyncWeb3[AsyncHTTPProvider]
to_checksum_address = Web3.to_checksum_address

_ABI = resources.files("gateway") / "abi"
ERC20_ABI: list[dict[str, Any]] = json.loads((_ABI / "erc20.json").read_text("utf-8"))
ERC1271_ABI: list[dict[str, Any]] = json.loads((_ABI / "erc1271.json").read_text("utf-8"))
ERC1271_MAGIC = bytes.fromhex("1626ba7e")
ERC6492_SUFFIX = bytes.fromhex("6492" * 16)
EIP3009_ABI: list[dict[str, Any]] = json.loads((_ABI / "eip3009.json").read_text("utf-8"))
#: ``keccak("Transfer(address,address,uint256)")``, hex without 0x.
TRANSFER_TOPIC_HEX = "ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
AUTHORIZATION_USED_TOPIC = "0x" + Web3.keccak(text="AuthorizationUsed(address,bytes32)").hex()

#: Errors that mean "this RPC URL did not answer properly"; anything else is a bug.
_RPC_ERRORS: tuple[type[BaseException], ...] = (
    aiohttp.ClientError,
    asyncio.TimeoutError,
    OSError,
    ValueError,  # web3 raises ValueError for JSON-RPC error answers in some paths
    Web3Exception,
)


@dataclass(frozen=True, slots=True)
class TransferLog:
    """One log of a receipt, raw: the payment rules decide what counts."""

    address: str  # emitting contract, EIP-55
    topics: tuple[bytes, ...]
    data: bytes
    log_index: int


@dataclass(frozen=True, slots=True)
class LoggedTransfer:
    """One ERC-20 ``Transfer`` found by ``transfer_logs``: lowercase hex, value in base units."""

    tx_hash: str
    block_number: int
    log_index: int
    sender: str
    value: int


@dataclass(frozen=True, slots=True)
class Receipt:
    tx_hash: str
    status: int
    block_number: int
    block_hash: str  # lowercase 0x hex
    logs: tuple[TransferLog, ...]
    endpoint: int  # index of the URL that answered, for follow-up reads
    gas_cost_wei: int = 0  # gasUsed x effectiveGasPrice: what the sender paid in gas


@dataclass(frozen=True, slots=True)
class BlockFacts:
    """What the finality rules need about a receipt's block, read in one batch."""

    canonical_hash: str | None  # hash of the canonical block at the receipt's height
    timestamp: int | None
    latest: int
    safe: int | None
    finalized: int | None


@dataclass(frozen=True, slots=True)
class Simulation:
    """A call estimated against ``latest``: its gas when it would succeed, else why not."""

    gas: int | None
    revert_reason: str | None


@dataclass(frozen=True, slots=True)
class FeeCaps:
    """EIP-1559 fee caps for a transaction sent now, in wei per gas."""

    max_fee_per_gas: int
    max_priority_fee_per_gas: int


class TokenMisconfigured(Unavailable):
    """A configured token is not what the config says on this chain (readiness only)."""


class RpcUnavailable(Unavailable):
    """Every RPC URL of a chain failed. ``outcomes`` says what each URL tried gave, by its
    position in the config (URLs may carry API keys, so they are not named)."""

    def __init__(self, public: str, *, outcomes: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(public, **kwargs)
        self.outcomes = tuple(outcomes)


#: Nesting of a JSON-RPC answer we accept: a receipt is 4 levels (result.logs[].topics[]),
#: a batch one more.
RPC_MAX_DEPTH = 16


class RpcAnswerRefused(aiohttp.ClientPayloadError):
    """An RPC answer over the size or depth bound: a failure of that URL, like a timeout."""


class _BoundedAnswers(HTTPSessionManager):
    """web3's session manager, reading each answer with bounds of our own before web3's JSON
    decoder (the stdlib's, recursive) sees it: at most ``max_bytes`` (refused from
    Content-Length, or as soon as the stream passes it) and ``RPC_MAX_DEPTH`` levels."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__()
        self.max_bytes = max_bytes

    async def async_make_post_request(self, endpoint_uri: Any, data: Any, **kwargs: Any) -> bytes:
        response = await self.async_get_response_from_post_request(
            endpoint_uri, data=data, **kwargs
        )
        try:
            response.raise_for_status()
            declared = response.content_length
            if declared is not None and declared > self.max_bytes:
                raise RpcAnswerRefused(f"answer of {declared} bytes, over {self.max_bytes}")
            body = bytearray()
            async for chunk in response.content.iter_chunked(64 * 1024):
                body += chunk
                if len(body) > self.max_bytes:
                    raise RpcAnswerRefused(f"answer over {self.max_bytes} bytes")
        finally:
            response.release()
        try:
            # Parsed once more by web3 after this: a receipt costs microseconds, and web3's
            # decoder then never meets a document deeper than RPC_MAX_DEPTH.
            bounded_json.loads(body, max_depth=RPC_MAX_DEPTH)
        except bounded_json.JsonRefused as exc:
            raise RpcAnswerRefused(f"answer refused: {exc}") from None
        return bytes(body)


class _Endpoint:
    def __init__(self, url: str, timeout: float, max_answer_bytes: int) -> None:
        self.url = url
        provider = AsyncHTTPProvider(
            url,
            request_kwargs={"timeout": aiohttp.ClientTimeout(total=timeout)},
            # Failover across URLs is ours; web3's own retries would only add latency.
            exception_retry_configuration=None,
        )
        provider._request_session_manager = _BoundedAnswers(max_answer_bytes)
        self.w3: _W3 = AsyncWeb3(provider)
        # web3's validation middleware asks eth_chainId before every eth_call, estimateGas and
        # send (one more round trip each); we check the chain id once per URL ourselves
        # (``_ensure_chain``), and pass checksummed addresses only (no ENS lookups).
        self.w3.middleware_onion.remove("validation")
        self.w3.middleware_onion.remove("ens_name_to_address")
        self.verified = False
        self.wrong_chain = False
        self.benched_until = 0.0

    async def close(self) -> None:
        provider = self.w3.provider
        if isinstance(provider, AsyncHTTPProvider):
            await provider.disconnect()


class ChainClient:
    """Reads one chain through its ordered RPC URLs."""

    def __init__(
        self,
        config: ChainConfig,
        *,
        timeout: float = 8.0,
        bench_seconds: float = 30.0,
        max_answer_bytes: int = 4 * 1024 * 1024,
        max_receipt_logs: int = 1000,
        clock: Clock = system_clock,
        metrics: GatewayMetrics | None = None,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        """``timeout`` bounds each call on one URL (headers, body and all); an answer over
        ``max_answer_bytes`` or ``RPC_MAX_DEPTH`` levels, or a receipt with more than
        ``max_receipt_logs`` logs, is a failure of that URL like a timeout (503 when no URL
        gives a bounded answer)."""
        self._metrics = metrics or GatewayMetrics()
        self.max_receipt_logs = max_receipt_logs
        self._timer = timer
        self.config = config
        self.timeout = timeout
        self.bench_seconds = bench_seconds
        self.clock = clock
        self._endpoints = [_Endpoint(url, timeout, max_answer_bytes) for url in config.rpc_urls]

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def chain_id(self) -> int:
        return self.config.chain_id

    async def close(self) -> None:
        for endpoint in self._endpoints:
            await endpoint.close()

    def _ordered(self) -> list[tuple[int, _Endpoint]]:
        now = self.clock()
        usable = [(i, e) for i, e in enumerate(self._endpoints) if not e.wrong_chain]
        return [p for p in usable if p[1].benched_until <= now] + [
            p for p in usable if p[1].benched_until > now
        ]

    async def _ensure_chain(self, endpoint: _Endpoint) -> None:
        if endpoint.verified:
            return
        chain_id = await endpoint.w3.eth.chain_id
        if chain_id != self.config.chain_id:
            endpoint.wrong_chain = True
            log.error(
                "rpc url serves the wrong chain",
                extra={"chain": self.name, "url": endpoint.url, "chain_id": chain_id},
            )
            raise ValueError(f"{endpoint.url} serves chain {chain_id}")
        endpoint.verified = True

    async def call(
        self,
        fn: Callable[[_W3], Awaitable[T]],
        *,
        operation: str,
        start_at: int | None = None,
    ) -> tuple[T, int]:
        """Run ``fn`` against the first URL that answers; return its result and URL index.

        ``start_at`` tries that URL first (to read from the endpoint that gave a receipt);
        ``operation`` names the call in ``rpc_request_seconds``/``rpc_errors_total``.
        """
        order = self._ordered()
        if start_at is not None:
            order.sort(key=lambda p: p[0] != start_at)
        errors: list[str] = []
        outcomes: list[str] = []
        for index, endpoint in order:
            started = self._timer()
            try:
                async with asyncio.timeout(self.timeout):
                    await self._ensure_chain(endpoint)
                    result = await fn(endpoint.w3)
            except _RPC_ERRORS as exc:
                self._observe(operation, started, failed=True)
                endpoint.benched_until = self.clock() + self.bench_seconds
                errors.append(f"{endpoint.url}: {type(exc).__name__}: {exc}")
                outcomes.append(f"url {index + 1}: {_outcome(exc)}")
                log.warning("rpc call failed", extra={"chain": self.name, "url": endpoint.url})
                continue
            self._observe(operation, started, failed=False)
            endpoint.benched_until = 0.0
            return result, index
        raise RpcUnavailable(
            f"No RPC endpoint of {self.name} is answering; try again later",
            internal="; ".join(errors) or "no usable RPC URL",
            outcomes=outcomes or ["no usable RPC URL (each serves another chain)"],
            headers={RETRY_AFTER: "10"},
        )

    def _observe(self, operation: str, started: float, *, failed: bool) -> None:
        self._metrics.rpc_attempt(self.name, operation, self._timer() - started, failed=failed)

    # --- reads --------------------------------------------------------------------------

    async def token_balances(self, holder: str, tokens: Sequence[TokenConfig]) -> dict[str, int]:
        """``balanceOf(holder)`` of every token, in one JSON-RPC batch."""
        owner = to_checksum_address(holder)

        async def read(w3: _W3) -> list[Any]:
            contracts = [
                w3.eth.contract(address=to_checksum_address(t.address), abi=ERC20_ABI)
                for t in tokens
            ]
            async with w3.batch_requests() as batch:
                for contract in contracts:
                    batch.add(contract.functions.balanceOf(owner))
                return list(await batch.async_execute())

        values, _ = await self.call(read, operation="token_balances")
        return {t.key: int(v) for t, v in zip(tokens, values, strict=True)}

    async def get_receipt(self, tx_hash: str) -> Receipt | None:
        """The receipt from the first URL that has it; None when every answering URL says
        not found (a tx not yet mined, or unknown). Raises Unavailable if none answers."""
        answered = False
        errors: list[str] = []
        for index, endpoint in self._ordered():
            started = self._timer()
            try:
                async with asyncio.timeout(self.timeout):
                    await self._ensure_chain(endpoint)
                    raw = await endpoint.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
                    receipt = _to_receipt(tx_hash, raw, index, max_logs=self.max_receipt_logs)
            except TransactionNotFound:
                self._observe("get_receipt", started, failed=False)
                answered = True
                continue
            except _RPC_ERRORS as exc:
                self._observe("get_receipt", started, failed=True)
                endpoint.benched_until = self.clock() + self.bench_seconds
                errors.append(f"{endpoint.url}: {type(exc).__name__}: {exc}")
                continue
            self._observe("get_receipt", started, failed=False)
            return receipt
        if answered:
            return None
        raise RpcUnavailable(
            f"No RPC endpoint of {self.name} is answering; try again later",
            internal="; ".join(errors) or "no usable RPC URL",
            headers={RETRY_AFTER: "10"},
        )

    async def block_facts(self, block_number: int, *, endpoint: int | None = None) -> BlockFacts:
        """Canonical hash and timestamp at a height plus the latest/safe/finalized heights,
        in one batch to one URL (the one that gave the receipt when possible).

        A height above that URL's tip gives ``canonical_hash`` and ``timestamp`` None (and a tag
        it does not serve, None): answers the payment rules turn into "pending", never a 503.
        """
        # Raw eth_getBlockByNumber (header fields only, no tx objects), parsed here: web3's
        # block formatters cost more than the round trip on blocks with many transactions, and
        # web3 turns a null block into BlockNotFound for the whole batch.
        queries = [(_GET_BLOCK, [ident, False]) for ident in (hex(block_number), *_FINALITY_TAGS)]

        async def read(w3: _W3) -> list[Mapping[str, Any] | None]:
            provider = w3.provider
            answers: Any = await provider.make_batch_request(queries)
            if not isinstance(answers, list):
                # One error object for the whole batch: an endpoint that refuses batches.
                answers = await asyncio.gather(*(provider.make_request(*q) for q in queries))
            if len(answers) != len(queries):
                raise ValueError(f"batch of {len(queries)} answered with {len(answers)}")
            blocks: list[Mapping[str, Any] | None] = []
            for answer in answers:
                if "error" in answer:
                    raise ValueError(f"eth_getBlockByNumber: {answer['error']}")
                blocks.append(answer.get("result"))
            if blocks[1] is None:  # no latest block at all: a broken endpoint, fail over
                raise ValueError("the endpoint has no latest block")
            return blocks

        blocks, _ = await self.call(read, operation="block_facts", start_at=endpoint)
        at, latest, safe, finalized = blocks
        assert latest is not None  # read() fails over otherwise
        return BlockFacts(
            canonical_hash=_hex(at["hash"]) if at else None,
            timestamp=_quantity(at["timestamp"]) if at else None,
            latest=_quantity(latest["number"]),
            safe=_quantity(safe["number"]) if safe else None,
            finalized=_quantity(finalized["number"]) if finalized else None,
        )

    async def latest_block(self) -> int:
        number, _ = await self.call(lambda w3: w3.eth.block_number, operation="block_number")
        return int(number)

    async def get_code(self, address: str) -> bytes:
        code, _ = await self.call(
            lambda w3: w3.eth.get_code(to_checksum_address(address)), operation="get_code"
        )
        return bytes(code)

    async def check_contract_signature(
        self, wallet: str, message: str, signature: bytes
    ) -> ContractSignature:
        """EIP-1271 ``isValidSignature(hash, sig)`` on a contract wallet: ``NO_CODE`` when the
        address has no code (no second call made), ``VALID`` for the magic value, ``INVALID``
        for a revert or any other answer. RPC failure -> 503."""
        digest = bytes(defunct_hash_message(text=message))
        address = to_checksum_address(wallet)

        async def ask(w3: _W3) -> ContractSignature:
            if not await w3.eth.get_code(address):
                return ContractSignature.NO_CODE
            contract = w3.eth.contract(address=address, abi=ERC1271_ABI)
            try:
                answer = await contract.functions.isValidSignature(digest, signature).call()
            except ContractLogicError:
                return ContractSignature.INVALID
            except (ValueError, Web3Exception) as exc:
                # An execution revert is an answer ("no"); anything else is an RPC failure.
                if "revert" in str(exc).lower():
                    return ContractSignature.INVALID
                raise
            if bytes(answer)[:4] == ERC1271_MAGIC:
                return ContractSignature.VALID
            return ContractSignature.INVALID

        result, _ = await self.call(ask, operation="is_valid_signature")
        return result

    # --- settlement (gateway.payments.settle) ----------------------------------------------

    async def is_valid_digest_signature(self, wallet: str, digest: bytes, signature: bytes) -> bool:
        """EIP-1271 ``isValidSignature(digest, signature)``; False when the wallet has no code,
        reverts or answers anything but the magic value. RPC failure -> 503."""
        address = to_checksum_address(wallet)

        async def ask(w3: _W3) -> bool:
            if not await w3.eth.get_code(address):
                return False
            contract = w3.eth.contract(address=address, abi=ERC1271_ABI)
            try:
                answer = await contract.functions.isValidSignature(digest, signature).call()
            except ContractLogicError:
                return False
            except (ValueError, Web3Exception) as exc:
                if "revert" in str(exc).lower():
                    return False
                raise
            return bytes(answer)[:4] == ERC1271_MAGIC

        result, _ = await self.call(ask, operation="is_valid_signature")
        return result

    async def simulate(self, sender: str, to: str, data: bytes) -> Simulation:
        """``eth_estimateGas`` of the call at ``latest``: a revert is an answer (its reason),
        an RPC failure a 503."""

        async def estimate(w3: _W3) -> Simulation:
            tx: Any = {"from": to_checksum_address(sender), "to": to_checksum_address(to)}
            tx["data"] = "0x" + data.hex()
            try:
                gas = await w3.eth.estimate_gas(tx)
            except ContractLogicError as exc:
                return Simulation(gas=None, revert_reason=str(exc.message or exc))
            except Web3RPCError as exc:
                if "revert" in str(exc).lower():
                    return Simulation(gas=None, revert_reason=str(exc))
                raise
            return Simulation(gas=int(gas), revert_reason=None)

        result, _ = await self.call(estimate, operation="simulate")
        return result

    async def eth_balance(self, address: str) -> int:
        """The account's native balance (wei) at the latest block."""
        balance, _ = await self.call(
            lambda w3: w3.eth.get_balance(to_checksum_address(address)), operation="eth_balance"
        )
        return int(balance)

    async def pending_nonce(self, address: str) -> int:
        """The account's next nonce counting its pending transactions."""
        count, _ = await self.call(
            lambda w3: w3.eth.get_transaction_count(to_checksum_address(address), "pending"),
            operation="pending_nonce",
        )
        return int(count)

    async def fee_caps(self) -> FeeCaps:
        """Twice the latest base fee plus the node's suggested tip: a transaction sent now
        stays includable through a few blocks of rising base fee."""

        async def read(w3: _W3) -> FeeCaps:
            block, raw_tip = await asyncio.gather(
                w3.eth.get_block("latest"), w3.eth.max_priority_fee
            )
            tip = int(raw_tip)
            base_fee = int(block.get("baseFeePerGas", 0))
            return FeeCaps(max_fee_per_gas=2 * base_fee + tip, max_priority_fee_per_gas=tip)

        caps, _ = await self.call(read, operation="fee_caps")
        return caps

    async def send_raw_transaction(self, raw: bytes) -> str:
        """Broadcast signed bytes; returns what the node said: ``sent``, or ``known`` when it
        already has this transaction or its nonce is spent (the receipt tells which). Sending
        the same bytes again never makes a second transaction. Other refusals -> 503."""

        async def send(w3: _W3) -> str:
            try:
                await w3.eth.send_raw_transaction(raw)
            except Web3RPCError as exc:
                text = str(exc).lower()
                if any(marker in text for marker in _ALREADY_SENT_MARKERS):
                    return "known"
                raise
            return "sent"

        answer, _ = await self.call(send, operation="send_raw_transaction")
        return answer

    async def authorization_used(self, token: str, authorizer: str, nonce: bytes) -> bool:
        """EIP-3009 ``authorizationState(authorizer, nonce)`` at ``latest``."""

        async def read(w3: _W3) -> bool:
            contract = w3.eth.contract(address=to_checksum_address(token), abi=EIP3009_ABI)
            used = await contract.functions.authorizationState(
                to_checksum_address(authorizer), nonce
            ).call()
            return bool(used)

        result, _ = await self.call(read, operation="authorization_state")
        return result

    async def authorization_used_tx(
        self, token: str, authorizer: str, nonce: bytes, *, lookback_blocks: int
    ) -> str | None:
        """The hash of the transaction whose ``AuthorizationUsed(authorizer, nonce)`` log the
        token emitted within the last ``lookback_blocks``; None when there is none."""

        async def search(w3: _W3) -> str | None:
            latest = int(await w3.eth.block_number)
            logs = await w3.eth.get_logs(
                {
                    "address": to_checksum_address(token),
                    "topics": [
                        AUTHORIZATION_USED_TOPIC,
                        "0x" + bytes.fromhex(authorizer[2:]).rjust(32, b"\0").hex(),
                        "0x" + nonce.hex(),
                    ],
                    "fromBlock": max(0, latest - lookback_blocks),
                    "toBlock": latest,
                }
            )
            if not logs:
                return None
            return _hex(logs[0]["transactionHash"])

        result, _ = await self.call(search, operation="authorization_logs")
        return result

    async def transfer_logs(
        self, token: str, recipient: str, from_block: int, to_block: int
    ) -> list[LoggedTransfer]:
        """Every ERC-20 ``Transfer(*, recipient, value)`` log the token emitted in the inclusive
        block range ``[from_block, to_block]`` (one ``eth_getLogs``; callers bound the range to
        what their providers allow). Logs of removed (reorged-out) blocks are left out."""
        topic_to = "0x" + bytes.fromhex(recipient[2:]).rjust(32, b"\0").hex()

        async def search(w3: _W3) -> list[Any]:
            logs = await w3.eth.get_logs(
                {
                    "address": to_checksum_address(token),
                    "topics": ["0x" + TRANSFER_TOPIC_HEX, None, topic_to],
                    "fromBlock": from_block,
                    "toBlock": to_block,
                }
            )
            return list(logs)

        raw, _ = await self.call(search, operation="transfer_logs")
        found: list[LoggedTransfer] = []
        for entry in raw:
            topics = [_to_bytes(t) for t in entry["topics"]]
            data = _to_bytes(entry["data"])
            if entry.get("removed") or len(topics) != 3 or len(data) != 32:
                continue  # not an ERC-20 Transfer (ERC-721 has 4 topics) or no longer canonical
            found.append(
                LoggedTransfer(
                    tx_hash=_hex(entry["transactionHash"]),
                    block_number=int(entry["blockNumber"]),
                    log_index=int(entry.get("logIndex", 0)),
                    sender="0x" + topics[1][-20:].hex(),
                    value=int.from_bytes(data, "big"),
                )
            )
        return found

    async def check(self) -> None:
        """Readiness: a URL answers with the right chain id, and every enabled token is a
        contract whose ``decimals()`` is the configured one (docs/CHAINS.md section 1), so a wrong
        address in the config shows here and not as payments nobody can make. Raises
        ``Unavailable`` (RPC down) or ``TokenMisconfigured`` naming the token."""
        tokens = list(self.config.tokens.values())

        async def read(w3: _W3) -> list[Any]:
            async with w3.batch_requests() as batch:
                for token in tokens:
                    batch.add(w3.eth.get_code(to_checksum_address(token.address)))
                return list(await batch.async_execute())

        try:
            codes, endpoint = await self.call(read, operation="token_check")
        except RpcUnavailable as exc:
            # Readiness says what each URL gave, not the payments' "try again later".
            raise RpcUnavailable(
                f"no RPC URL answered: {'; '.join(exc.outcomes)}",
                internal=exc.internal,
                outcomes=exc.outcomes,
            ) from None
        for token, code in zip(tokens, codes, strict=True):
            if not code:
                raise TokenMisconfigured(f"token {token.key} at {token.address} has no code")

        async def decimals(w3: _W3) -> list[Any]:
            async with w3.batch_requests() as batch:
                for token in tokens:
                    contract = w3.eth.contract(
                        address=to_checksum_address(token.address), abi=ERC20_ABI
                    )
                    batch.add(contract.functions.decimals())
                return list(await batch.async_execute())

        answers, _ = await self.call(decimals, operation="token_check", start_at=endpoint)
        for token, answer in zip(tokens, answers, strict=True):
            if int(answer) != token.decimals:
                raise TokenMisconfigured(
                    f"token {token.key} at {token.address} has {int(answer)} decimals, "
                    f"the config says {token.decimals}"
                )


class ChainRegistry:
    """Every configured chain's client, by name."""

    def __init__(
        self,
        chains: Mapping[str, ChainConfig],
        *,
        timeout: float = 8.0,
        max_answer_bytes: int = 4 * 1024 * 1024,
        max_receipt_logs: int = 1000,
        clock: Clock = system_clock,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self._clients = {
            name: ChainClient(
                cfg,
                timeout=timeout,
                max_answer_bytes=max_answer_bytes,
                max_receipt_logs=max_receipt_logs,
                clock=clock,
                metrics=metrics,
            )
            for name, cfg in chains.items()
        }

    def get(self, name: str) -> ChainClient:
        return self._clients[name]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._clients.values())

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()


_GET_BLOCK = RPCEndpoint("eth_getBlockByNumber")
#: How nodes say they already have a raw transaction (geth, anvil, others) or its nonce is spent.
_ALREADY_SENT_MARKERS = ("already known", "known transaction", "already imported", "nonce too low")
_FINALITY_TAGS = ("latest", "safe", "finalized")


def _outcome(exc: BaseException) -> str:
    """What one RPC attempt got, for readiness: the error class, and the HTTP status if any."""
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"HTTP {exc.status}"
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return type(exc).__name__


def _quantity(value: Any) -> int:
    """A JSON-RPC quantity (``0x``-hex string) or an int."""
    return int(value, 16) if isinstance(value, str) else int(value)


def _hex(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    text = str(value).lower()
    return text if text.startswith("0x") else "0x" + text


def _to_bytes(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    text = str(value)
    return bytes.fromhex(text[2:] if text.startswith("0x") else text)


def _to_receipt(tx_hash: str, raw: Mapping[str, Any], endpoint: int, *, max_logs: int) -> Receipt:
    """Our ``Receipt``; ``ValueError`` (a failure of that URL) for more than ``max_logs``."""
    if len(raw.get("logs", [])) > max_logs:
        raise ValueError(f"receipt with {len(raw['logs'])} logs, over {max_logs}")
    logs = tuple(
        TransferLog(
            address=to_checksum_address(entry["address"]),
            topics=tuple(_to_bytes(t) for t in entry["topics"]),
            data=_to_bytes(entry["data"]),
            log_index=int(entry.get("logIndex", 0)),
        )
        for entry in raw.get("logs", [])
    )
    return Receipt(
        tx_hash=tx_hash,
        status=int(raw.get("status", 0)),
        block_number=int(raw["blockNumber"]),
        block_hash=_hex(raw["blockHash"]),
        logs=logs,
        endpoint=endpoint,
        gas_cost_wei=_int_or_zero(raw.get("gasUsed")) * _int_or_zero(raw.get("effectiveGasPrice")),
    )


def _int_or_zero(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0
