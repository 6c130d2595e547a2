"""JSON from untrusted bytes, with a nesting bound of our own (request bodies, CreateOS and
RPC answers).

``loads`` parses with orjson, whose reader does not recurse on the C stack and stops at 1,024
levels whatever ``sys.getrecursionlimit()`` says, then checks the document against
``max_depth`` without recursion either, so nothing deeper than ``max_depth`` ever reaches code
of ours (validators, ``json.dumps`` of a stored answer) that does recurse. The size bound is the
caller's: every caller reads at most a configured number of bytes before it gets here.

The stdlib decoder is not used on untrusted input: its recursion is bounded only by the
interpreter's recursion limit, a process-wide setting any import may raise (py_ecc raises it
to 100,000), and past the C stack a deep document is a segfault, not an exception.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["JsonRefused", "check_depth", "loads"]


class JsonRefused(ValueError):
    """Not JSON, or nested deeper than allowed. ``too_deep`` tells which."""

    def __init__(self, reason: str, *, too_deep: bool = False) -> None:
        super().__init__(reason)
        self.too_deep = too_deep


def loads(data: bytes | bytearray | memoryview | str, *, max_depth: int) -> Any:
    """The document in ``data``; ``JsonRefused`` for invalid JSON (orjson's rules: no NaN,
    no lone surrogates, UTF-8 only) or nesting deeper than ``max_depth`` arrays/objects."""
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        too_deep = "depth limit" in str(exc)
        raise JsonRefused(f"invalid JSON: {exc}", too_deep=too_deep) from None
    check_depth(document, max_depth)
    return document


def check_depth(document: Any, max_depth: int) -> None:
    """Raise ``JsonRefused`` when arrays/objects nest deeper than ``max_depth`` (a scalar is
    depth 0, ``[]`` depth 1). Iterative: a deep document costs a list, not stack frames."""
    pending: list[tuple[Any, int]] = [(document, 0)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth + 1 > max_depth:
            raise JsonRefused(f"nested deeper than {max_depth} levels", too_deep=True)
        pending.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
