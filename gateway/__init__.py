"""Payment-gated deploy gateway for autonomous agents."""
