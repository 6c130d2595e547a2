"""docs/PROTOCOL.md section 1: every failure is JSON; unknown routes 404, wrong methods 405, big
bodies 413."""

from __future__ import annotations

import httpx

from tests.support import running_gateway


async def test_unknown_route_is_json_404(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/no/such/route")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"error": "No route GET /no/such/route"}


async def test_wrong_method_is_json_405(gateway: httpx.AsyncClient) -> None:
    response = await gateway.delete("/health")
    assert response.status_code == 405
    assert "error" in response.json()
    assert "GET" in response.headers["allow"]


async def test_declared_oversized_body_gets_413_before_reading(make_settings) -> None:
    async with running_gateway(
        make_settings(max_body_bytes=2048, max_upload_bytes=1024)
    ) as running:
        gateway = running.client
        response = await gateway.post(
            "/agent/deploy", content=b"x" * 4096, headers={"content-type": "application/json"}
        )
    assert response.status_code == 413
    assert response.json()["code"] == "body_too_large"


async def test_streamed_oversized_body_stops_reading_at_the_limit() -> None:
    """No Content-Length: the limit is enforced while the body streams in, and the handler
    never gets more than the limit."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from gateway.errors import GatewayError
    from gateway.web.middleware import BodyLimitMiddleware
    from gateway.web.responses import handle_gateway_error

    seen: list[int] = []

    async def echo(request: Request) -> JSONResponse:
        async for chunk in request.stream():
            seen.append(len(chunk))
        return JSONResponse({"read": sum(seen)})

    app = Starlette(
        routes=[Route("/agent/deploy", echo, methods=["POST"])],
        exception_handlers={GatewayError: handle_gateway_error},
    )
    wrapped = BodyLimitMiddleware(app, max_upload_body=4096)
    produced: list[int] = []

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(10):
            produced.append(1)
            yield b"y" * 1024

    transport = httpx.ASGITransport(app=wrapped)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.post("/agent/deploy", content=chunks())
    assert response.status_code == 413
    assert response.json()["code"] == "body_too_large"
    assert sum(seen) <= 4096


async def test_small_routes_have_a_small_limit(gateway: httpx.AsyncClient) -> None:
    response = await gateway.post("/agent/credits/topup", content=b"z" * (65 * 1024))
    assert response.status_code == 413


async def test_invalid_content_length(gateway: httpx.AsyncClient) -> None:
    response = await gateway.post("/agent/deploy", headers={"content-length": "abc"}, content=b"")
    assert response.status_code in (400, 413)
