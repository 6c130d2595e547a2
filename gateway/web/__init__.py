"""HTTP layer: the only importer of Starlette. Thin handlers that parse, call the domain and
render; the URL surface is in ``routes.py``."""
