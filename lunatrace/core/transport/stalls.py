"""How long the server may take to answer a batch: its pauses for runs it does not have.

The server answers a request only once every event in it is written, and it pauses 5 s
for each run start whose parent it does not have yet (in case the parent is on its way)
and for each llm end whose start it does not have, then stores the run anyway (as a
root). A batch with a few such events takes tens of seconds; a client that gave up on it
earlier and sent it again would have the server write both copies at once.

:class:`ServerRuns` keeps the runs this process knows the server holds (started in an
answered request, not yet ended), so the sender can count a batch's pauses exactly and
wait for the answer as long as the server will need.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from lunatrace.core.transport.batch import Item

ORPHAN_PAUSE_S = 5.0  # the server's wait for a missing parent or start
PER_EVENT_S = 0.005  # its writing time per event is ~1.5 ms; with room to spare
KNOWN_RUNS = 50_000
STARTS = ("start", "chat")  # events that make a run the server holds


class ServerRuns:
    """The open runs the server is known to hold, bounded (the oldest are forgotten).

    Forgetting one only makes an estimate longer, never shorter than the server's time.
    """

    def __init__(self) -> None:
        self._open: OrderedDict[str, None] = OrderedDict()

    def holds(self, run_id: str) -> bool:
        """Whether the server is known to hold ``run_id`` (started, not ended)."""
        return run_id in self._open

    def pauses_on(self, header: tuple[str, str, str, str | None], started: set[str]) -> bool:
        """Whether the server pauses on an event (a start whose parent it lacks, an llm end
        whose start it lacks), given the runs ``started`` earlier in the same request."""
        run_type, event, run_id, parent = header
        if event == "start":
            return parent is not None and parent not in started and parent not in self._open
        return event == "end" and run_type == "llm" and run_id not in started and run_id not in self._open

    def pauses(self, items: Iterable[Item]) -> int:
        """How many 5-second pauses the server will make for ``items`` sent in one request."""
        started: set[str] = set()
        count = 0
        for item in items:
            header = item.header
            if header is None:
                continue
            count += self.pauses_on(header, started)
            if header[1] in STARTS:
                started.add(header[2])  # a thread message is a run its work can be parented to
        return count

    def answered(self, items: Iterable[Item], refused: Iterable[str] = ()) -> None:
        """Note what an answered request stored: its starts open runs, its ends close them."""
        gone = set(refused)
        opened = self._open
        for item in items:
            header = item.header
            if header is None:
                continue
            event, run_id = header[1], header[2]
            if event in STARTS and run_id not in gone:
                opened[run_id] = None  # a thread message is a run too (ended only by a merge)
                if len(opened) > KNOWN_RUNS:
                    opened.popitem(last=False)
            elif event in ("end", "error"):
                opened.pop(run_id, None)

    def read_timeout(self, items: list[Item], base: float) -> float:
        """Seconds to wait for the answer to ``items``: ``base`` plus the server's own time."""
        return base + ORPHAN_PAUSE_S * self.pauses(items) + PER_EVENT_S * len(items)
