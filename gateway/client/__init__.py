"""The agent's side: request signing, the async client (``AgentClient``), the CLI and the MCP
server (``mcp_server``: the ``mcp`` extra, imported only by ``python -m gateway mcp``).

Speaks to the gateway over HTTP only and shares no code with the server, so an agent can use it
against any gateway that implements the wire contract (``gateway.web.openapi``).
"""

from gateway.client.agent import AgentClient
from gateway.client.bundle import Bundle, collect

__all__ = ["AgentClient", "Bundle", "collect"]
