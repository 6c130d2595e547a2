"""The local USDC (``TestUsdc``): EIP-3009 and EIP-2612 with the real USDC EIP-712 domain, on anvil.

Signatures are made with eth-account's EIP-712 signer, the way the x402 and mppx clients make
them, so a digest mismatch between the contract and a stock client fails here first.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_abi.abi import decode, encode
from eth_account import Account
from eth_utils.abi import function_signature_to_4byte_selector
from eth_utils.crypto import keccak

from devstack.anvil import (
    ANVIL_ACCOUNTS,
    CANONICAL_TOKENS,
    AnvilNode,
    AnvilNotFound,
    AnvilRpcError,
    find_anvil_binary,
)

AUTHORIZATION_USED_TOPIC = "0x" + keccak(text="AuthorizationUsed(address,bytes32)").hex()
AUTHORIZATION_CANCELED_TOPIC = "0x" + keccak(text="AuthorizationCanceled(address,bytes32)").hex()
TRANSFER_TOPIC = "0x" + keccak(text="Transfer(address,address,uint256)").hex()

PAYER, PAYER_KEY = ANVIL_ACCOUNTS[3]
PAY_TO = ANVIL_ACCOUNTS[4][0]
RELAYER = ANVIL_ACCOUNTS[5][0]
STRANGER_KEY = ANVIL_ACCOUNTS[6][1]

AUTHORIZATION_FIELDS = [
    {"name": "from", "type": "address"},
    {"name": "to", "type": "address"},
    {"name": "value", "type": "uint256"},
    {"name": "validAfter", "type": "uint256"},
    {"name": "validBefore", "type": "uint256"},
    {"name": "nonce", "type": "bytes32"},
]
AUTHORIZATION_ARGS = "address,address,uint256,uint256,uint256,bytes32"
AUTHORIZATION_TYPES = ["address", "address", "uint256", "uint256", "uint256", "bytes32"]


def calldata(signature: str, types: list[str], args: list[Any]) -> str:
    return "0x" + (function_signature_to_4byte_selector(signature) + encode(types, args)).hex()


def _start(chain_id: int, log_dir: Path) -> AnvilNode:
    try:
        find_anvil_binary()
    except AnvilNotFound as missing:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(missing))
    return AnvilNode.start(chain_id, log_dir=log_dir)


@pytest.fixture(scope="module", params=[42161, 8453], ids=["arbitrum", "base"])
def chain(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AnvilNode]:
    with _start(request.param, tmp_path_factory.mktemp(f"anvil-{request.param}")) as node:
        node.install_test_tokens()
        yield node


@pytest.fixture
def node(chain: AnvilNode) -> Iterator[AnvilNode]:
    snapshot = chain.snapshot()
    yield chain
    assert chain.revert(snapshot)


@pytest.fixture
def usdc(node: AnvilNode) -> str:
    token = CANONICAL_TOKENS[node.chain_id]["usdc"]
    node.mint(token, PAYER, 10_000_000)
    return token


def domain(node: AnvilNode, token: str) -> dict[str, Any]:
    return {
        "name": "USD Coin",
        "version": "2",
        "chainId": node.chain_id,
        "verifyingContract": token,
    }


def authorization(**overrides: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "from": PAYER,
        "to": PAY_TO,
        "value": 1_500_000,
        "validAfter": 0,
        "validBefore": int(time.time()) + 3600,
        "nonce": secrets.token_bytes(32),
    }
    message.update(overrides)
    return message


def sign(
    node: AnvilNode,
    token: str,
    primary: str,
    message: dict[str, Any],
    *,
    key: str = PAYER_KEY,
    chain_id: int | None = None,
) -> bytes:
    fields = AUTHORIZATION_FIELDS
    if primary == "Permit":
        fields = [
            {"name": "owner", "type": "address"},
            {"name": "spender", "type": "address"},
            {"name": "value", "type": "uint256"},
            {"name": "nonce", "type": "uint256"},
            {"name": "deadline", "type": "uint256"},
        ]
    elif primary == "CancelAuthorization":
        fields = [{"name": "authorizer", "type": "address"}, {"name": "nonce", "type": "bytes32"}]
    signing_domain = domain(node, token)
    if chain_id is not None:
        signing_domain["chainId"] = chain_id
    signed = Account.sign_typed_data(key, signing_domain, {primary: fields}, message)
    return bytes(signed.signature)


def authorization_args(message: dict[str, Any]) -> list[Any]:
    return [message[f["name"]] for f in AUTHORIZATION_FIELDS]


def with_vrs(function: str, message: dict[str, Any], signature: bytes) -> str:
    r, s, v = signature[:32], signature[32:64], signature[64]
    return calldata(
        f"{function}({AUTHORIZATION_ARGS},uint8,bytes32,bytes32)",
        [*AUTHORIZATION_TYPES, "uint8", "bytes32", "bytes32"],
        [*authorization_args(message), v, r, s],
    )


def with_bytes(function: str, message: dict[str, Any], signature: bytes) -> str:
    return calldata(
        f"{function}({AUTHORIZATION_ARGS},bytes)",
        [*AUTHORIZATION_TYPES, "bytes"],
        [*authorization_args(message), signature],
    )


def send(node: AnvilNode, token: str, data: str, sender: str = RELAYER) -> dict[str, Any]:
    tx_hash = node.send_transaction(sender, token, data)
    receipt = node.receipt(tx_hash)
    assert receipt is not None
    return receipt


def revert_reason(node: AnvilNode, token: str, data: str, sender: str = RELAYER) -> str:
    """The revert message of a call that must revert (eth_call, so nothing is mined)."""
    with pytest.raises(AnvilRpcError) as reverted:
        node.rpc("eth_call", [{"from": sender, "to": token, "data": data}, "latest"])
    return str(reverted.value)


def used(node: AnvilNode, token: str, authorizer: str, nonce: bytes) -> bool:
    data = calldata(
        "authorizationState(address,bytes32)", ["address", "bytes32"], [authorizer, nonce]
    )
    (state,) = decode(["bool"], bytes.fromhex(node.call(token, data)[2:]))
    return bool(state)


def read(node: AnvilNode, token: str, signature: str, result: str) -> Any:
    (value,) = decode([result], bytes.fromhex(node.call(token, calldata(signature, [], []))[2:]))
    return value


# -- the domain ----------------------------------------------------------------------------


def test_usdc_carries_the_real_usdc_domain_and_usdt_stays_plain(node: AnvilNode) -> None:
    usdc = CANONICAL_TOKENS[node.chain_id]["usdc"]
    usdt = CANONICAL_TOKENS[node.chain_id]["usdt"]
    assert read(node, usdc, "name()", "string") == "USD Coin"
    assert read(node, usdc, "symbol()", "string") == "USDC"
    assert read(node, usdc, "version()", "string") == "2"
    assert read(node, usdc, "decimals()", "uint8") == 6
    expected = keccak(
        encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [
                keccak(
                    text="EIP712Domain(string name,string version,uint256 chainId,"
                    "address verifyingContract)"
                ),
                keccak(text="USD Coin"),
                keccak(text="2"),
                node.chain_id,
                usdc,
            ],
        )
    )
    assert read(node, usdc, "DOMAIN_SEPARATOR()", "bytes32") == expected
    assert read(node, usdt, "name()", "string") == "Test USD"
    with pytest.raises(AnvilRpcError):
        node.call(usdt, calldata("DOMAIN_SEPARATOR()", [], []))


# -- EIP-3009 ------------------------------------------------------------------------------


@pytest.mark.parametrize("form", [with_vrs, with_bytes], ids=["v,r,s", "bytes"])
def test_transfer_with_authorization_moves_once_and_marks_the_nonce(
    node: AnvilNode, usdc: str, form: Any
) -> None:
    message = authorization()
    data = form(
        "transferWithAuthorization", message, sign(node, usdc, "TransferWithAuthorization", message)
    )
    assert not used(node, usdc, PAYER, message["nonce"])

    receipt = send(node, usdc, data)

    assert int(receipt["status"], 16) == 1
    assert node.balance_of(usdc, PAYER) == 8_500_000
    assert node.balance_of(usdc, PAY_TO) == 1_500_000
    assert used(node, usdc, PAYER, message["nonce"])
    topics = [log["topics"] for log in receipt["logs"]]
    assert [t[0] for t in topics] == [AUTHORIZATION_USED_TOPIC, TRANSFER_TOPIC]
    assert topics[0][1][-40:] == PAYER[2:].lower()
    assert topics[0][2] == "0x" + message["nonce"].hex()
    assert all(log["address"].lower() == usdc.lower() for log in receipt["logs"])
    # Replaying the same authorization, in either form, is refused.
    assert "authorization is used or canceled" in revert_reason(node, usdc, data)
    other_form = with_bytes if form is with_vrs else with_vrs
    replay = other_form(
        "transferWithAuthorization", message, sign(node, usdc, "TransferWithAuthorization", message)
    )
    assert "authorization is used or canceled" in revert_reason(node, usdc, replay)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"validAfter": int(time.time()) + 3600}, "authorization is not yet valid"),
        ({"validBefore": 1}, "authorization is expired"),
    ],
    ids=["not-yet-valid", "expired"],
)
def test_authorization_outside_its_window_is_refused(
    node: AnvilNode, usdc: str, overrides: dict[str, int], reason: str
) -> None:
    message = authorization(**overrides)
    data = with_bytes(
        "transferWithAuthorization", message, sign(node, usdc, "TransferWithAuthorization", message)
    )
    assert reason in revert_reason(node, usdc, data)


def test_signature_must_be_the_payers_over_this_message_and_domain(
    node: AnvilNode, usdc: str
) -> None:
    message = authorization()
    by_stranger = sign(node, usdc, "TransferWithAuthorization", message, key=STRANGER_KEY)
    wrong_chain = sign(node, usdc, "TransferWithAuthorization", message, chain_id=node.chain_id + 1)
    good = sign(node, usdc, "TransferWithAuthorization", message)
    tampered = dict(message, value=message["value"] + 1)
    redirected = dict(message, to=RELAYER)
    as_receive = sign(node, usdc, "ReceiveWithAuthorization", message)
    for data in (
        with_bytes("transferWithAuthorization", message, by_stranger),
        with_bytes("transferWithAuthorization", message, wrong_chain),
        with_bytes("transferWithAuthorization", tampered, good),
        with_bytes("transferWithAuthorization", redirected, good),
        with_bytes("transferWithAuthorization", message, as_receive),
    ):
        assert "FiatTokenV2: invalid signature" in revert_reason(node, usdc, data)
    high_s = (
        good[:32]
        + (
            (
                0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
                - int.from_bytes(good[32:64])
            ).to_bytes(32)
        )
        + bytes([55 - good[64]])
    )
    assert "invalid signature 's' value" in revert_reason(
        node, usdc, with_bytes("transferWithAuthorization", message, high_s)
    )
    assert "invalid signature length" in revert_reason(
        node, usdc, with_bytes("transferWithAuthorization", message, good[:64])
    )
    assert node.balance_of(usdc, PAYER) == 10_000_000


def test_authorization_beyond_the_balance_reverts_and_leaves_the_nonce_unused(
    node: AnvilNode, usdc: str
) -> None:
    message = authorization(value=10_000_001)
    data = with_vrs(
        "transferWithAuthorization", message, sign(node, usdc, "TransferWithAuthorization", message)
    )
    assert "insufficient balance" in revert_reason(node, usdc, data)
    receipt = send(node, usdc, data)
    assert int(receipt["status"], 16) == 0
    assert not used(node, usdc, PAYER, message["nonce"])


@pytest.mark.parametrize("form", [with_vrs, with_bytes], ids=["v,r,s", "bytes"])
def test_receive_with_authorization_only_by_the_payee(
    node: AnvilNode, usdc: str, form: Any
) -> None:
    message = authorization()
    data = form(
        "receiveWithAuthorization", message, sign(node, usdc, "ReceiveWithAuthorization", message)
    )
    assert "caller must be the payee" in revert_reason(node, usdc, data, sender=RELAYER)
    # A TransferWithAuthorization signature does not pass as a ReceiveWithAuthorization one.
    wrong_type = form(
        "receiveWithAuthorization", message, sign(node, usdc, "TransferWithAuthorization", message)
    )
    assert "invalid signature" in revert_reason(node, usdc, wrong_type, sender=PAY_TO)

    receipt = send(node, usdc, data, sender=PAY_TO)

    assert int(receipt["status"], 16) == 1
    assert node.balance_of(usdc, PAY_TO) == 1_500_000
    assert used(node, usdc, PAYER, message["nonce"])
    assert "authorization is used or canceled" in revert_reason(node, usdc, data, sender=PAY_TO)


def test_cancel_authorization_burns_the_nonce(node: AnvilNode, usdc: str) -> None:
    message = authorization()
    cancel = {"authorizer": PAYER, "nonce": message["nonce"]}
    signature = sign(node, usdc, "CancelAuthorization", cancel)
    receipt = send(
        node,
        usdc,
        calldata(
            "cancelAuthorization(address,bytes32,bytes)",
            ["address", "bytes32", "bytes"],
            [PAYER, message["nonce"], signature],
        ),
    )
    assert int(receipt["status"], 16) == 1
    assert receipt["logs"][0]["topics"][0] == AUTHORIZATION_CANCELED_TOPIC
    assert used(node, usdc, PAYER, message["nonce"])
    data = with_bytes(
        "transferWithAuthorization", message, sign(node, usdc, "TransferWithAuthorization", message)
    )
    assert "authorization is used or canceled" in revert_reason(node, usdc, data)


def test_contract_payer_is_checked_by_eip1271(node: AnvilNode, usdc: str) -> None:
    always = node.deploy("AlwaysValidWallet")
    never = node.deploy("NeverValidWallet")
    for wallet in (always, never):
        node.mint(usdc, wallet, 2_000_000)
    # Any bytes pass for the accepting wallet (its isValidSignature decides), none for the other.
    blob = b"\x01" * 70
    accepted = authorization(**{"from": always})
    refused = authorization(**{"from": never})
    receipt = send(node, usdc, with_bytes("transferWithAuthorization", accepted, blob))
    assert int(receipt["status"], 16) == 1
    assert node.balance_of(usdc, PAY_TO) == 1_500_000
    assert "invalid signature" in revert_reason(
        node, usdc, with_bytes("transferWithAuthorization", refused, blob)
    )
    # An EOA key signing for a contract address does not pass the ECDSA path either.
    signed_by_eoa = sign(node, usdc, "TransferWithAuthorization", refused)
    assert "invalid signature" in revert_reason(
        node, usdc, with_bytes("transferWithAuthorization", refused, signed_by_eoa)
    )


# -- EIP-2612 ------------------------------------------------------------------------------


def _permit(
    owner: str, spender: str, value: int, deadline: int, signature: bytes, form: str
) -> str:
    if form == "bytes":
        return calldata(
            "permit(address,address,uint256,uint256,bytes)",
            ["address", "address", "uint256", "uint256", "bytes"],
            [owner, spender, value, deadline, signature],
        )
    return calldata(
        "permit(address,address,uint256,uint256,uint8,bytes32,bytes32)",
        ["address", "address", "uint256", "uint256", "uint8", "bytes32", "bytes32"],
        [owner, spender, value, deadline, signature[64], signature[:32], signature[32:64]],
    )


@pytest.mark.parametrize("form", ["v,r,s", "bytes"])
def test_permit_sets_the_allowance_and_consumes_the_nonce(
    node: AnvilNode, usdc: str, form: str
) -> None:
    deadline = int(time.time()) + 3600
    nonces = calldata("nonces(address)", ["address"], [PAYER])
    assert decode(["uint256"], bytes.fromhex(node.call(usdc, nonces)[2:])) == (0,)
    message = {
        "owner": PAYER,
        "spender": RELAYER,
        "value": 700_000,
        "nonce": 0,
        "deadline": deadline,
    }
    data = _permit(PAYER, RELAYER, 700_000, deadline, sign(node, usdc, "Permit", message), form)

    assert int(send(node, usdc, data)["status"], 16) == 1

    allowance = calldata("allowance(address,address)", ["address", "address"], [PAYER, RELAYER])
    assert decode(["uint256"], bytes.fromhex(node.call(usdc, allowance)[2:])) == (700_000,)
    assert decode(["uint256"], bytes.fromhex(node.call(usdc, nonces)[2:])) == (1,)
    # The same permit again: its nonce is spent, so the signature no longer matches.
    assert "EIP2612: invalid signature" in revert_reason(node, usdc, data)
    pull = calldata(
        "transferFrom(address,address,uint256)",
        ["address", "address", "uint256"],
        [PAYER, PAY_TO, 700_000],
    )
    assert int(send(node, usdc, pull, sender=RELAYER)["status"], 16) == 1
    assert node.balance_of(usdc, PAY_TO) == 700_000


def test_expired_or_foreign_permit_is_refused(node: AnvilNode, usdc: str) -> None:
    expired = {"owner": PAYER, "spender": RELAYER, "value": 1, "nonce": 0, "deadline": 1}
    data = _permit(PAYER, RELAYER, 1, 1, sign(node, usdc, "Permit", expired), "bytes")
    assert "permit is expired" in revert_reason(node, usdc, data)
    deadline = int(time.time()) + 3600
    message = {"owner": PAYER, "spender": RELAYER, "value": 1, "nonce": 0, "deadline": deadline}
    foreign = sign(node, usdc, "Permit", message, key=STRANGER_KEY)
    assert "EIP2612: invalid signature" in revert_reason(
        node, usdc, _permit(PAYER, RELAYER, 1, deadline, foreign, "bytes")
    )
