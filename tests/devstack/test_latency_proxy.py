"""devstack.latency_proxy: the benchmarks' network delay, against real loopback servers."""

from __future__ import annotations

import time

import httpx

from devstack.anvil import AnvilNode
from devstack.latency_proxy import LatencyProxy


def test_each_request_arrives_late_in_order_and_is_recorded(arbitrum: AnvilNode) -> None:
    with LatencyProxy(arbitrum.port, delay=0.2, name="rpc") as proxy:
        with httpx.Client(base_url=proxy.url) as client:
            start = time.perf_counter()
            first = client.post("/", json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"})
            elapsed = time.perf_counter() - start
            batch = [
                {"jsonrpc": "2.0", "id": 2, "method": "eth_blockNumber"},
                {"jsonrpc": "2.0", "id": 3, "method": "eth_chainId"},
            ]
            second = client.post("/", json=batch)
        assert first.json()["result"] == hex(42161)
        assert [r["id"] for r in second.json()] == [2, 3]
        # The injected delay is a lower bound: the answer cannot come before it.
        assert elapsed >= 0.2
        requests = [e for e in proxy.snapshot() if e.request_line is not None]
        assert [e.request_line for e in requests] == ["POST /", "POST /"]
        assert [e.methods for e in requests] == [
            ("eth_chainId",),
            ("eth_blockNumber", "eth_chainId"),
        ]
        proxy.reset()
        assert proxy.snapshot() == []
