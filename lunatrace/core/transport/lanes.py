"""Lanes: requests sent on a thread of their own, one at a time, while the worker goes on.

The main lane carries the worker's batches: it sends one while the worker encodes the
next (the worker waits only if the previous one is still in flight). The slow lane
carries the events the server will pause on, so they hold up nothing else.

The server pauses 5 s for each run start whose parent it does not have, and for each llm
end whose start it does not have (see :mod:`stalls`). Sent in line with everything else,
a batch with a few of these would hold every later batch of the process back by as many
times 5 s. :meth:`SlowLane.divide` takes those events out of a batch, with every event
that depends on them (the same run's later events, its children's), and the lane sends
them on a thread of its own while the worker goes on sending the rest.

Order still holds: an event goes to the lane if its run or its parent is in the lane,
until the lane is empty again, so no event overtakes the start it depends on. The lane
sends one request at a time. Everything it learns (counts, undelivered events) is taken
back by the worker with :meth:`collect`, on the worker's thread, so the destination's
counters keep a single writer.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from lunatrace.core.config import Config
from lunatrace.core.guard import failed
from lunatrace.core.transport.batch import Item
from lunatrace.core.transport.delivery import Counters, Settle
from lunatrace.core.transport.http import IngestClient
from lunatrace.core.transport.pacing import Pacer
from lunatrace.core.transport.sender import Sender
from lunatrace.core.transport.stalls import STARTS, ServerRuns


class Lane:
    """Sends batches in order, one request at a time, on a thread of its own."""

    name = "lunatrace-lane"

    def __init__(
        self,
        config: Config,
        server_runs: ServerRuns,
        stop: threading.Event,
        pacer: Pacer,
        backlogged: Callable[[], bool] = lambda: False,
    ) -> None:
        self.config = config
        self.server_runs = server_runs
        self.stop = stop
        self.counters = Counters()  # written by the lane's thread only; merged by collect()
        self._client = IngestClient(config)
        self._sender = Sender(config, self._client, self.counters, stop, backlogged, pacer)
        self._sender.server_runs = server_runs
        self._in_flight: list[Item] = []
        self._waiting: deque[tuple[list[Item], Settle]] = deque()
        self._undelivered: list[Item] = []
        self._settle: Settle = lambda items: True  # the worker's, given with the lane's events
        self._busy = False
        self._done = threading.Event()
        self._done.set()

    @property
    def idle(self) -> bool:
        return not self._busy and not self._waiting

    def submit(self, items: list[Item], settle: Settle) -> None:
        """Queue events for the lane (in order after what it already holds)."""
        self._waiting.append((items, settle))
        self._settle = settle
        self._next()

    def collect(self, counters: Counters) -> tuple[list[Item], Settle]:
        """On the worker's thread: add the lane's counts to ``counters``, start its next
        request, and return the events it could not deliver (to be spooled, in order,
        after ``settle``), with everything it held behind them."""
        if self._busy and self._done.is_set():
            self._busy = False
            counters.add(self.counters)
            self.counters.reset()
        undelivered: list[Item] = []
        if not self._busy and self._undelivered:
            undelivered, self._undelivered = self._undelivered, []
            while self._waiting:  # everything behind an undelivered batch is kept with it
                undelivered += self._waiting.popleft()[0]
        self._next()
        return undelivered, self._settle

    def wait(self, timeout: float | None) -> bool:
        """Wait for the lane's request in flight to end (``True`` once it has, or if none is)."""
        return self._done.wait(timeout)

    @property
    def requests(self) -> int:
        return self._sender.requests

    @property
    def retry_after(self) -> float | None:
        return self._sender.retry_after

    @property
    def unreachable(self) -> str | None:
        return self._sender.unreachable

    @property
    def disabled(self) -> str | None:
        return self._sender.disabled

    def disable(self, reason: str) -> None:
        """Send nothing more (another lane found the key or URL refused)."""
        self._sender.disabled = reason

    def started_in_flight(self) -> set[str]:
        """Runs started by the request in flight: stored before anything sent after it."""
        if not self._busy:
            return set()
        headers = (item.header for item in self._in_flight)
        return {h[2] for h in headers if h is not None and h[1] in STARTS}

    def _next(self) -> None:
        if self._busy or not self._waiting or self._undelivered:
            return
        items, settle = self._waiting.popleft()
        self._busy = True
        self._in_flight = items
        self._done.clear()
        thread = threading.Thread(target=self._send, args=(items, settle), name=self.name)
        thread.daemon = True
        thread.start()

    def _send(self, items: list[Item], settle: Settle) -> None:
        try:
            deadline = time.monotonic() + self.config.retry_timeout
            self._undelivered = self._sender.send(items, deadline=deadline, retry=False, on_settled=settle)
        except Exception as exc:  # noqa: BLE001 - not only a report: the worker gets the events back
            failed("sending on a lane", exc, "its events are kept in the spool")
            self._undelivered = items
        finally:
            self._done.set()

    def close(self) -> None:
        self._client.close()


class SlowLane(Lane):
    """The lane for what the server pauses on, and every event that depends on it."""

    name = "lunatrace-slow-lane"

    def __init__(self, config: Config, server_runs: ServerRuns, stop: threading.Event, pacer: Pacer) -> None:
        super().__init__(config, server_runs, stop, pacer)
        self._blocked: set[str] = set()  # runs whose events must go through the lane

    def divide(self, items: list[Item], started_before: set[str]) -> tuple[list[Item], list[Item]]:
        """Split ``items`` into what may be sent on the main lane and what must go through
        this one. ``started_before``: runs started by the main lane's request in flight,
        which the server will hold before anything the main lane sends next."""
        now: list[Item] = []
        lane: list[Item] = []
        started = set(started_before)
        blocked, known = self._blocked, self.server_runs
        for item in items:
            header = item.header
            if header is None:
                now.append(item)
                continue
            run_id, parent = header[2], header[3]
            depends = run_id in blocked or (parent is not None and parent in blocked)
            if depends or known.pauses_on(header, started):
                blocked.add(run_id)
                lane.append(item)
            else:
                now.append(item)
                if header[1] in STARTS:
                    started.add(run_id)
        return now, lane

    def collect(self, counters: Counters) -> tuple[list[Item], Settle]:
        undelivered = super().collect(counters)
        if self.idle:
            self._blocked.clear()  # the lane's runs are stored: their later events need not wait
        return undelivered
