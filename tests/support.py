"""Helpers shared by test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx

from gateway.app import create_app
from gateway.config import Settings


@contextlib.asynccontextmanager
async def serve_in_process(settings: Settings, **kwargs: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway app with its lifespan running, behind an httpx client (ASGI, no sockets)."""
    app = create_app(settings, **kwargs)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield client
