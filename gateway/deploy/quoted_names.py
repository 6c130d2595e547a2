"""CreateOS's recent answers about names, for quotes only.

An unpaid deploy request is answered with a 402 quote, and the quote is given only for a name
CreateOS says is free (a 409 otherwise: nobody pays for a name they cannot have). An agent, or
a loop, that asks for the same name again within a few seconds gets CreateOS's last answer
from here instead of another upstream round trip (``upstream.quote_name_seconds``, 0 turns it
off). Nothing that moves money or creates anything relies on it:

- a request with a payment (a tx hash or a protocol credential) always asks CreateOS;
- a request without one that turns out to deploy on the wallet's credits asks CreateOS again
  before creating (``DeployFlow``), and the create itself claims the name atomically;
- a wrong answer here costs at most a quote for a name that has just been taken (the paid
  retry then gets its 409 with nothing credited or sent) or a 409 for a name freed seconds ago.

Per process, in memory, at most ``max_names`` names (the oldest answer goes first), so a loop
of fresh names cannot grow it. Every answer CreateOS gives, to any request, refreshes it.
"""

from __future__ import annotations

from gateway.types import Clock, system_clock

__all__ = ["QuotedNames"]


class QuotedNames:
    """Name -> (CreateOS said it was free, when); answers younger than ``seconds`` only."""

    def __init__(
        self, seconds: float, *, max_names: int = 10_000, clock: Clock = system_clock
    ) -> None:
        self._seconds = seconds
        self._max_names = max_names
        self._clock = clock
        # Insertion order is age order: every entry lives ``seconds``, and ``remember`` moves a
        # refreshed name to the end, so the first entry is always the oldest.
        self._answers: dict[str, tuple[bool, float]] = {}

    def recall(self, name: str) -> bool | None:
        """CreateOS's answer for ``name`` if it is younger than ``seconds``, else None."""
        if self._seconds <= 0:
            return None
        key = name.lower()
        entry = self._answers.get(key)
        if entry is None:
            return None
        available, at = entry
        if self._clock() - at >= self._seconds:
            del self._answers[key]
            return None
        return available

    def remember(self, name: str, available: bool) -> None:
        if self._seconds <= 0:
            return
        key = name.lower()
        self._answers.pop(key, None)
        while len(self._answers) >= self._max_names:
            del self._answers[next(iter(self._answers))]
        self._answers[key] = (available, self._clock())

    def __len__(self) -> int:
        return len(self._answers)
