"""A CreateOS simulator: the REST API the gateway calls, over real HTTP."""
