"""The agent's side: request signing, the async client and the CLI."""
