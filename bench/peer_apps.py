"""The peers' 402 challenge paths as ASGI apps, for ``bench.peer_402`` (``--factory``).

- ``x402_app``: the x402 Python SDK's ``PaymentMiddlewareASGI`` (FastAPI) guarding one route,
  the ``exact`` EVM scheme on Arbitrum One USDC. Start-up asks the facilitator which kinds it
  supports; the facilitator here is an object in this process that answers that one question
  (``get_supported``), so no network is involved. The unpaid request's 402 needs nothing from
  the facilitator (the SDK builds the requirements from the route config).
- ``mpp_app``: pympp's 402 challenge for one route, see ``_mpp_app``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette.applications import Starlette

PAY_TO = "0x" + "ab" * 20
ARBITRUM = "eip155:42161"
PRICE = "$0.50"


class _LocalFacilitator:
    """Answers the SDK's start-up question; verify/settle are never reached by an unpaid call."""

    def get_supported(self) -> Any:
        from x402.schemas.responses import SupportedKind, SupportedResponse

        return SupportedResponse(
            kinds=[SupportedKind(x402_version=2, scheme="exact", network=ARBITRUM)]
        )

    async def verify(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("not used by the 402 challenge path")

    async def settle(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("not used by the 402 challenge path")


def x402_app() -> FastAPI:
    from x402.http.middleware.fastapi import PaymentMiddlewareASGI
    from x402.mechanisms.evm.exact.server import ExactEvmScheme
    from x402.server import x402ResourceServer

    server = x402ResourceServer(_LocalFacilitator())
    server.register(ARBITRUM, ExactEvmScheme())
    routes = {
        "POST /agent/deploy": {
            "accepts": {"scheme": "exact", "payTo": PAY_TO, "price": PRICE, "network": ARBITRUM},
            "description": "deploy an app",
        }
    }
    app = FastAPI()

    @app.post("/agent/deploy")
    async def deploy() -> dict[str, str]:
        return {"status": "deployed"}

    app.add_middleware(PaymentMiddlewareASGI, routes=routes, server=server)
    return app


def mpp_app() -> Starlette:
    """pympp's ``Mpp`` engine with its EVM ``charge`` method (EIP-3009, Base USDC: the asset it
    knows) behind its ``pay`` decorator on a Starlette route. The unpaid request gets the 402
    with its HMAC-bound ``WWW-Authenticate: Payment`` challenge; the ``settle`` hook is never
    reached without a credential."""
    from mpp.methods.evm import server as evm
    from mpp.methods.evm.assets import BASE_USDC
    from mpp.server import Mpp, pay
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def settle(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("not used by the 402 challenge path")

    mpp = Mpp(
        methods=evm.charge(currency=BASE_USDC, recipient=PAY_TO, settle=settle),
        realm="bench",
        secret_key="bench-secret-" + "0" * 32,
    )

    @pay(mpp.charge(amount="0.50"))
    async def deploy(request: Request, credential: Any, receipt: Any) -> JSONResponse:
        return JSONResponse({"status": "deployed"})

    return Starlette(routes=[Route("/agent/deploy", deploy, methods=["POST"])])
