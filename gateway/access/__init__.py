"""Who may call, and how often: wallet-signature authentication and rate limits."""
