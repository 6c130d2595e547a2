"""Authenticated agent routes (SPEC section 3) live in one module per concern: ``credits``
(balance, top-up), and the deploy flow's ``deploy`` and ``projects``."""
