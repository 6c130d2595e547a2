"""The whole URL surface on one screen."""

from __future__ import annotations

from starlette.routing import Route

from gateway.web import agent, openapi, public

routes = [
    # public
    Route("/health", public.health, methods=["GET"]),
    Route("/health/ready", public.ready, methods=["GET"]),
    Route("/openapi.json", openapi.document, methods=["GET"]),
    Route("/agent/chains", public.chains, methods=["GET"]),
    Route("/agent/recipients", public.recipients, methods=["GET"]),
    Route("/agent/balance/{address}", public.balance, methods=["GET"]),
    # authenticated (wallet signature)
    Route("/agent/credits", agent.credits, methods=["GET"]),
]
