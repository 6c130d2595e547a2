"""The OpenAPI 3.1 document of every route (``GET /openapi.json``).

Kept in step with ``routes.py`` by a test: every route there is documented here and nothing
here is missing from the router.
"""

from __future__ import annotations

import copy
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.config import Settings
from gateway.deploy.validation import MAX_PATH_LENGTH, MAX_ZIP_FILENAME
from gateway.headers import (
    IDEMPOTENCY_KEY,
    NONCE,
    PAYMENT_CHAIN,
    PAYMENT_SIGNATURE,
    PAYMENT_TOKEN,
    PAYMENT_TX,
    REQUEST_ID,
    SIGNATURE,
    TIMESTAMP,
    USE_EXISTING_CREDITS,
    WALLET_ADDRESS,
)
from gateway.types import ADDRESS_PATTERN
from gateway.web.discovery import payment_info, service_info
from gateway.web.responses import json_response
from gateway.web.services import services

_ERROR = {"$ref": "#/components/schemas/Error"}
_ADDRESS = {"type": "string", "pattern": ADDRESS_PATTERN}
_TX = {"type": "string", "pattern": "^0x[0-9a-fA-F]{64}$"}

AUTH_PARAMETERS: list[dict[str, Any]] = [
    {"$ref": "#/components/parameters/WalletAddress"},
    {"$ref": "#/components/parameters/Signature"},
    {"$ref": "#/components/parameters/Timestamp"},
    {"$ref": "#/components/parameters/Nonce"},
]
PAYMENT_PARAMETERS: list[dict[str, Any]] = [
    {"name": PAYMENT_TX, "in": "header", "required": False, "schema": {"type": "string"}},
    {
        "name": PAYMENT_SIGNATURE,
        "in": "header",
        "required": False,
        "description": "x402 v2 payment payload (standard base64), answering PAYMENT-REQUIRED",
        "schema": {"type": "string"},
    },
    {"name": PAYMENT_CHAIN, "in": "header", "required": False, "schema": {"type": "string"}},
    {"name": PAYMENT_TOKEN, "in": "header", "required": False, "schema": {"type": "string"}},
]


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    names = {
        400: "Invalid input",
        401: "Wallet signature rejected",
        402: "Payment required, not verified or pending",
        403: "Not the owner",
        404: "Unknown resource",
        409: "Conflict",
        413: "Body too large",
        429: "Rate limited",
        502: "Upstream failed",
        503: "Dependency unavailable",
    }
    return {str(c): _json(_ERROR, names[c]) for c in codes}


def _obj(**props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props}


_STR = {"type": "string"}
_NUM = {"type": "number"}
_INT = {"type": "integer"}
_NULLABLE_STR = {"type": ["string", "null"]}

_BASE64 = {
    "type": "string",
    "contentEncoding": "base64",
    "pattern": "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$",
}
#: What ``validation.safe_path`` accepts: relative, forward slashes, no empty or ``..`` segment,
#: no control character or backslash (and, beyond a pattern: at most once per upload).
_UPLOAD_PATH = {
    "type": "string",
    "maxLength": MAX_PATH_LENGTH,
    "pattern": (
        r"^(?![A-Za-z]:)(?!(?:.*/)?\.\.(?:/|$))"
        r"[^/\u0000-\u001f\u007f-\u009f\\]+(?:/[^/\u0000-\u001f\u007f-\u009f\\]+)*$"
    ),
}

_UPLOAD = {
    "oneOf": [
        {
            "type": "object",
            "required": ["type", "files"],
            "additionalProperties": False,
            "properties": {
                "type": {"const": "files"},
                "files": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 2000,
                    "items": {
                        "type": "object",
                        "required": ["path", "content"],
                        "additionalProperties": False,
                        "properties": {
                            "path": _UPLOAD_PATH,
                            "content": _BASE64,
                        },
                    },
                },
            },
        },
        {
            "type": "object",
            "required": ["type", "data"],
            "additionalProperties": False,
            "properties": {
                "type": {"const": "zip"},
                "data": _BASE64,
                "filename": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_ZIP_FILENAME,
                    "pattern": r"^[^/\\\u0000-\u001f\u007f-\u009f]+$",
                },
            },
        },
    ]
}

_DEPLOY_BODY = {
    "type": "object",
    "required": ["uniqueName", "displayName", "upload"],
    "properties": {
        "uniqueName": {"type": "string", "pattern": "^[A-Za-z0-9-]{4,32}$"},
        "displayName": {"type": "string", "pattern": "^[A-Za-z0-9 _-]{4,48}$"},
        "description": {"type": "string", "minLength": 4, "maxLength": 2048},
        "months": {"type": "integer", "minimum": 1, "maximum": 24, "default": 1},
        "settings": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "port": {"type": "integer", "minimum": 1, "maximum": 65535, "default": 3000},
                "runtime": {"type": "string", "maxLength": 1024, "default": "build-ai"},
                "framework": {"type": "string", "maxLength": 1024},
                "buildCommand": {"type": "string", "maxLength": 1024},
                "runCommand": {"type": "string", "maxLength": 1024},
                "installCommand": {"type": "string", "maxLength": 1024},
                "buildDir": {"type": "string", "maxLength": 1024},
                "directoryPath": {"type": "string", "maxLength": 1024},
                "hasDockerfile": {"type": "boolean", "default": False},
                "useBuildAI": {"type": "boolean", "default": True},
                "buildVars": {"$ref": "#/components/schemas/EnvMap"},
                "runEnvs": {"$ref": "#/components/schemas/EnvMap"},
            },
        },
        "upload": _UPLOAD,
    },
    "additionalProperties": False,
}

_QUOTE = _obj(
    error=_STR,
    amount_usd=_NUM,
    amount_token=_STR,
    current_credit_balance_usd={"type": ["number", "null"]},
    active_projects={"type": ["integer", "null"]},
    pay_to=_ADDRESS,
    payment_chain=_STR,
    token=_STR,
    decimals=_INT,
    supported_chains={"type": "array"},
    warning=_STR,
    credited_usd=_NUM,
    price_usd=_NUM,
    reason=_STR,
    payment_status=_STR,
)

_DEPLOYED = _obj(projectId=_STR, deploymentId=_STR, status=_STR, message=_STR, warning=_STR)
_IDEMPOTENCY_KEY: dict[str, Any] = {
    "name": IDEMPOTENCY_KEY,
    "in": "header",
    "required": False,
    "description": "Same wallet (or operator) and key within 24 h: the first successful "
    "answer, replayed",
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_:.-]{1,128}$"},
}
_DEPLOY_HEADERS: list[dict[str, Any]] = [
    *PAYMENT_PARAMETERS,
    {"name": USE_EXISTING_CREDITS, "in": "header", "required": False, "schema": _STR},
    _IDEMPOTENCY_KEY,
]

_PROJECT_ID = {"name": "projectId", "in": "path", "required": True, "schema": _STR}
_DEPLOYMENT_ID = {"name": "deploymentId", "in": "path", "required": True, "schema": _STR}
_ADDRESS_PARAM = {"name": "address", "in": "path", "required": True, "schema": _STR}
_ADMIN: list[dict[str, list[str]]] = [{"adminToken": []}]


def _op(
    summary: str,
    ok: dict[str, Any],
    errors: tuple[int, ...],
    *,
    auth: bool = False,
    parameters: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    admin: bool = False,
) -> dict[str, Any]:
    params = list(AUTH_PARAMETERS if auth else []) + list(parameters or [])
    op: dict[str, Any] = {"summary": summary, "responses": {"200": ok, **_errors(*errors)}}
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if admin:
        op["security"] = _ADMIN
    if auth:
        op["responses"].setdefault("429", _json(_ERROR, "Rate limited"))
    return op


PATHS: dict[str, dict[str, Any]] = {
    "/health": {"get": _op("Liveness", _json(_obj(status=_STR), "Alive"), ())},
    "/health/ready": {
        "get": _op(
            "Readiness of Redis, every chain RPC and CreateOS",
            _json(_obj(status=_STR, checks={"type": "object"}), "Ready"),
            (503,),
        )
    },
    "/openapi.json": {"get": _op("This document", _json({"type": "object"}, "OpenAPI 3.1"), ())},
    "/llms.txt": {
        "get": _op(
            "The agent's guide: what the service does, how to authenticate, pay and poll",
            {
                "description": "Markdown, with the configured prices",
                "content": {"text/markdown": {"schema": _STR}},
            },
            (),
        )
    },
    "/metrics": {
        "get": {
            **_op(
                "Prometheus metrics (payment funnel, deploys, upstream and RPC latency, 429s). "
                "Open when GATEWAY_ADMIN_TOKEN is unset; when it is set, "
                "Authorization: Bearer <token> is required (401 otherwise). Never rate limited.",
                {
                    "description": "Prometheus text exposition",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                (401,),
            ),
            "security": [{}, {"adminToken": []}],
        }
    },
    "/agent/chains": {
        "get": _op(
            "Accepted chains and tokens",
            _json(_obj(chains={"type": "array"}), "Chains"),
            (429,),
        )
    },
    "/agent/recipients": {
        "get": _op(
            "Payment recipient per chain",
            _json(_obj(recipients={"type": "array"}), "Recipients"),
            (429,),
        )
    },
    "/agent/receipts": {
        "get": _op(
            "The address that signs every paid answer's Gateway-Receipt (EIP-712)",
            _json(
                _obj(
                    address={"type": ["string", "null"]},
                    domain={"type": "object"},
                    types={"type": "object"},
                    primaryType=_STR,
                    header=_STR,
                ),
                "Receipt key",
            ),
            (429,),
        )
    },
    "/agent/balance/{address}": {
        "get": _op(
            "On-chain balances of the accepted tokens",
            _json(
                _obj(address=_STR, chain=_STR, chain_id=_INT, balances={"type": "array"}),
                "Balances",
            ),
            (400, 429, 503),
            parameters=[
                _ADDRESS_PARAM,
                {"name": "chain", "in": "query", "required": False, "schema": _STR},
            ],
        )
    },
    "/agent/deploy": {
        "post": _op(
            "Deploy code, paid from credits or by an on-chain payment",
            _json(_DEPLOYED, "Deployment started"),
            (400, 401, 402, 409, 413, 502, 503),
            auth=True,
            parameters=_DEPLOY_HEADERS,
            body=_DEPLOY_BODY,
        )
    },
    "/agent/deploy/{projectId}/{deploymentId}/status": {
        "get": _op(
            "Deployment status",
            _json(
                _obj(
                    status={"enum": ["deploying", "ready", "failed"]},
                    deployment_id=_STR,
                    deployment_status=_STR,
                    endpoint=_STR,
                    message=_STR,
                    reason=_STR,
                ),
                "Status",
            ),
            (401, 403, 404, 502, 503),
            auth=True,
            parameters=[_PROJECT_ID, _DEPLOYMENT_ID],
        )
    },
    "/agent/deploy/{projectId}/{deploymentId}/logs": {
        "get": _op(
            "Build or runtime logs of a deployment",
            _json(_obj(kind=_STR, deployment_id=_STR, lines={"type": "array"}, text=_STR), "Logs"),
            (400, 401, 403, 404, 409, 502, 503),
            auth=True,
            parameters=[
                _PROJECT_ID,
                _DEPLOYMENT_ID,
                {
                    "name": "kind",
                    "in": "query",
                    "required": False,
                    "schema": {"enum": ["build", "runtime"], "default": "build"},
                },
                {
                    "name": "skip",
                    "in": "query",
                    "required": False,
                    "description": "build: lines already seen",
                    "schema": {"type": "integer", "minimum": 0, "default": 0},
                },
                {
                    "name": "since",
                    "in": "query",
                    "required": False,
                    "description": "runtime: seconds of logs (409 until the deployment is live)",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 604800, "default": 60},
                },
            ],
        )
    },
    "/agent/projects": {
        "get": _op(
            "The wallet's projects",
            _json(_obj(wallet=_STR, count=_INT, projects={"type": "array"}), "Projects"),
            (401, 502, 503),
            auth=True,
        )
    },
    "/agent/projects/{projectId}": {
        "delete": _op(
            "Delete a project",
            _json(_obj(projectId=_STR, status=_STR), "Deleted"),
            (401, 403, 404, 502, 503),
            auth=True,
            parameters=[_PROJECT_ID],
        )
    },
    "/agent/projects/{projectId}/deploy": {
        "post": _op(
            "Deploy new code into an owned project",
            _json(_DEPLOYED, "Deployment started"),
            (400, 401, 402, 403, 404, 409, 413, 502, 503),
            auth=True,
            parameters=[_PROJECT_ID, *_DEPLOY_HEADERS],
            body={
                "type": "object",
                "required": ["upload"],
                "additionalProperties": False,
                "properties": {
                    "upload": _UPLOAD,
                    "months": {"type": "integer", "minimum": 1, "maximum": 24, "default": 1},
                },
            },
        )
    },
    "/agent/credits": {
        "get": _op(
            "Credit balance, burn and runway",
            _json(
                _obj(
                    wallet=_STR,
                    credits=_NUM,
                    balance_usd=_NUM,
                    active_projects=_INT,
                    burn_usd_per_hour=_NUM,
                    runway_hours={"type": ["number", "null"]},
                    ledger={"type": "array"},
                ),
                "Credits",
            ),
            (401, 503),
            auth=True,
        )
    },
    "/agent/credits/topup": {
        "post": _op(
            "Credit a payment without deploying",
            _json(_obj(wallet=_STR, credited_usd=_NUM, balance_usd=_NUM, credits=_NUM), "Credited"),
            (400, 401, 402, 409, 503),
            auth=True,
            parameters=PAYMENT_PARAMETERS,
        )
    },
    "/admin/wallets/{address}": {
        "get": _op(
            "A wallet's credits, ledger, projects and payments",
            _json({"type": "object"}, "Wallet"),
            (400, 401, 404),
            parameters=[_ADDRESS_PARAM],
            admin=True,
        )
    },
    "/admin/wallets/{address}/adjust": {
        "post": _op(
            "Signed credit adjustment with a reason",
            _json({"type": "object"}, "Adjusted"),
            (400, 401, 404, 409),
            parameters=[_ADDRESS_PARAM, _IDEMPOTENCY_KEY],
            body={
                "type": "object",
                "required": ["amount_usd", "reason"],
                "properties": {
                    "amount_usd": {
                        "type": "string",
                        "pattern": "^-?\\d{1,12}(\\.\\d{1,6})?$",
                        "description": "signed USD decimal string, not zero",
                    },
                    "reason": {"type": "string", "minLength": 1, "maxLength": 500},
                },
            },
            admin=True,
        )
    },
    "/admin/payments/{chain}/{txHash}": {
        "get": _op(
            "The recorded verification of one payment",
            _json({"type": "object"}, "Payment"),
            (400, 401, 404),
            parameters=[
                {"name": "chain", "in": "path", "required": True, "schema": _STR},
                {"name": "txHash", "in": "path", "required": True, "schema": _TX},
            ],
            admin=True,
        )
    },
}


#: The operations that take a payment: each carries ``x-payment-info``.
PAID_OPERATIONS = (
    ("/agent/deploy", "post"),
    ("/agent/projects/{projectId}/deploy", "post"),
    ("/agent/credits/topup", "post"),
)


def build_document(settings: Settings | None = None) -> dict[str, Any]:
    """The OpenAPI document; with ``settings``, paid operations carry ``x-payment-info`` and
    the document ``x-service-info``, both built from that configuration."""

    def header(name: str, pattern: str, description: str) -> dict[str, Any]:
        return {
            "name": name,
            "in": "header",
            "required": True,
            "description": description,
            "schema": {"type": "string", "pattern": pattern},
        }

    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "Agent deploy gateway",
            "version": "1.0.0",
            "description": "Payment-gated deploys for agents with EVM wallets (HTTP 402). "
            "Every response carries X-Request-Id: the caller's own when it sent a safe short "
            "token (1-64 of A-Z a-z 0-9 . _ : -), else a fresh one; it names the request in "
            "the gateway's logs.",
        },
        "paths": _with_request_ids(PATHS),
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": _STR, "code": _STR, "reason": _STR, "field": _STR},
                },
                "EnvMap": {
                    "type": "object",
                    "maxProperties": 100,
                    "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]{0,127}$"},
                    "additionalProperties": {"type": "string", "maxLength": 4096},
                },
            },
            "parameters": {
                "WalletAddress": header(
                    WALLET_ADDRESS, ADDRESS_PATTERN, "The paying/acting wallet"
                ),
                "Signature": header(
                    SIGNATURE,
                    "^0x[0-9a-fA-F]{130,4096}$",
                    "EIP-191 personal_sign of '{wallet}:{timestamp}:{nonce}'",
                ),
                "Timestamp": header(TIMESTAMP, "^[0-9]{1,16}$", "Unix milliseconds"),
                "Nonce": header(NONCE, "^[A-Za-z0-9_-]{8,128}$", "Single-use per wallet"),
            },
            "headers": {
                "RequestId": {
                    "description": "The request's id in the gateway's logs",
                    "required": True,
                    "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,64}$"},
                }
            },
            "securitySchemes": {"adminToken": {"type": "http", "scheme": "bearer"}},
        },
    }
    if settings is not None:
        document["x-service-info"] = service_info(settings)
        for path, method in PAID_OPERATIONS:
            document["paths"][path][method]["x-payment-info"] = payment_info(settings)
    return document


_REQUEST_ID_PARAMETER = {
    "name": REQUEST_ID,
    "in": "header",
    "required": False,
    "description": "Reused as the response's X-Request-Id when it is a safe short token",
    "schema": {"type": "string"},
}


def _with_request_ids(paths: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``paths`` with the optional ``X-Request-Id`` request header on every operation and the
    ``X-Request-Id`` response header on every response."""
    decorated = copy.deepcopy(paths)
    for operations in decorated.values():
        for operation in operations.values():
            operation["parameters"] = [*operation.get("parameters", []), _REQUEST_ID_PARAMETER]
            for response in operation["responses"].values():
                response["headers"] = {REQUEST_ID: {"$ref": "#/components/headers/RequestId"}}
    return decorated


async def document(request: Request) -> Response:
    """Built once per app from its settings (the figures follow the configuration)."""
    state = request.app.state
    if getattr(state, "openapi_document", None) is None:
        state.openapi_document = build_document(services(request).settings)
    return json_response(state.openapi_document)
