"""Local stand-ins for the outside world: anvil chains, the CreateOS simulator, embedded services.

Used by the test suite and by ``python -m gateway dev``; never imported by the request path.
"""
