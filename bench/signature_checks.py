"""Signature checks per second: the gateway's recover_signer vs raw coincurve vs eth-account.

    .venv/bin/python -m bench.signature_checks [--n 5000] [--rounds 5]

All three recover the signer of the same EIP-191 messages (fresh nonce each); the table gives
the median rate over the rounds and each one's ratio to raw coincurve (the ceiling).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
import uuid

import coincurve
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_hash.auto import keccak

from gateway.access.auth import eip191_hash, recover_signer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    account = Account.create()
    messages = [f"{account.address}:1700000000000:{uuid.uuid4().hex}" for _ in range(args.n)]
    signatures = [bytes(account.sign_message(encode_defunct(text=m)).signature) for m in messages]
    hashes = [eip191_hash(m) for m in messages]
    expected = account.address.lower()

    def raw_coincurve() -> None:
        for h, sig in zip(hashes, signatures, strict=True):
            public = coincurve.PublicKey.from_signature_and_message(
                sig[:64] + bytes([sig[64] - 27]), h, hasher=None
            )
            keccak(public.format(compressed=False)[1:])

    def gateway() -> None:
        for m, sig in zip(messages, signatures, strict=True):
            assert recover_signer(m, sig) == expected

    def eth_account() -> None:
        for m, sig in zip(messages, signatures, strict=True):
            Account.recover_message(encode_defunct(text=m), signature=sig)

    cases = {
        "raw coincurve (hash given)": raw_coincurve,
        "gateway recover_signer": gateway,
        "eth-account recover_message": eth_account,
    }
    rates: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, fn in cases.items():
            started = time.perf_counter()
            fn()
            rates[name].append(args.n / (time.perf_counter() - started))

    print(f"machine: {platform.machine()}, Python {platform.python_version()}, "
          f"coincurve {coincurve.__version__ if hasattr(coincurve, '__version__') else ''}; "
          f"{args.n} signatures x {args.rounds} rounds")  # fmt: skip
    ceiling = statistics.median(rates["raw coincurve (hash given)"])
    print("\n| implementation | checks/s (median) | vs raw coincurve |")
    print("|---|---:|---:|")
    for name, values in rates.items():
        rate = statistics.median(values)
        print(f"| {name} | {rate:,.0f} | {rate / ceiling:.2f} |")


if __name__ == "__main__":
    main()
