"""Where the worker's batches go: a Lunary server (with the store as spool), or the store.

The server destination keeps order across failures: once a batch had to be spooled it
goes *offline*, and every newer batch is spooled behind it until the spool has been
re-sent in full (probed every ``retry_timeout``, at most every 30 s). A new process with
events left in the spool starts offline, so they go out first.
"""

from __future__ import annotations

import logging
import threading
import time

from lunatrace.core.config import Config
from lunatrace.core.transport.batch import Item, as_pairs
from lunatrace.core.transport.delivery import Counters, Feed, Settle
from lunatrace.core.transport.http import IngestClient
from lunatrace.core.transport.lanes import Lane, SlowLane
from lunatrace.core.transport.pacing import Pacer
from lunatrace.core.transport.resend import resend
from lunatrace.core.transport.sender import Sender
from lunatrace.core.transport.store import LOCAL, SPOOLED, EventStore, StoreError, lease_owner, set_aside

logger = logging.getLogger("lunatrace")

PROBE_CAP_S = 30.0
STORE_REOPEN_S = 10.0
LOSS_REPORT_S = 60.0


class Spool:
    """The store, opened on first use.

    A store that cannot be opened (a full disk, a permission fixed later, a lock held
    too long) is reported once and tried again after :data:`STORE_REOPEN_S`, so a
    passing failure does not lose every later event.
    """

    def __init__(self, config: Config, counters: Counters, state: int) -> None:
        self.path = config.store_path
        self.counters = counters
        self.state = state
        self._store: EventStore | None = None
        self._failed_at: float | None = None
        self._write_lock = threading.Lock()
        self._loss_logged_at: float | None = None

    def store(self) -> EventStore | None:
        if self._store is not None:
            return self._store
        now = time.monotonic()
        if self._failed_at is not None and now - self._failed_at < STORE_REOPEN_S:
            return None
        try:
            self._store = EventStore(self.path)
        except StoreError as exc:
            if exc.damaged:
                return self.replace_damaged(exc)
            if self._failed_at is None:
                logger.error(
                    "lunatrace: %s; events that cannot be kept meanwhile are lost (retrying every %.0f s)",
                    exc,
                    STORE_REOPEN_S,
                )
            self._failed_at = now
            return None
        if self._failed_at is not None:
            logger.warning("lunatrace: the store %s is usable again", self.path)
            self._failed_at = None
        return self._store

    def replace_damaged(self, exc: StoreError) -> EventStore | None:
        """Set a damaged store file aside and start a new one in its place (reported)."""
        self._store = None
        try:
            kept = set_aside(self.path)
            self._store = EventStore(self.path)
        except (OSError, StoreError) as again:
            logger.error(
                "lunatrace: the store %s is damaged (%s); replacing it failed: %s", self.path, exc, again
            )
            self._failed_at = time.monotonic()
            return None
        logger.error(
            "lunatrace: the store %s was damaged (%s); it is kept as %s and a new store is used",
            self.path,
            exc,
            kept,
        )
        return self._store

    def _report_loss(self, exc: StoreError) -> None:
        """One error for the first loss, then at most one a minute with the running count."""
        now = time.monotonic()
        if self._loss_logged_at is None or now - self._loss_logged_at >= LOSS_REPORT_S:
            self._loss_logged_at = now
            logger.error(
                "lunatrace: events lost, %d so far (lunatrace.stats()['dropped_store_unusable']): %s",
                self.counters.dropped_store_unusable,
                exc,
            )

    def has_pending(self) -> bool | None:
        """Whether spooled events wait to be sent; ``None`` if the store cannot be read now."""
        if not self.path.exists():
            return False
        store = self.store()
        if store is None:
            return None
        try:
            return store.count_pending(include_local=False) > 0
        except StoreError:
            return None

    def write(self, items: list[Item]) -> None:
        """Keep ``items`` in the store, each once.

        The worker and, at shutdown, the thread taking over from it may both hold the
        same items (the worker's write can be stuck on a store another program locked):
        writes are serialised, and items already kept are left out.
        """
        if not items:
            return
        with self._write_lock:
            items = [item for item in items if not item.kept]
            if items and self._append(items):
                for item in items:
                    item.kept = True

    def _append(self, items: list[Item]) -> bool:
        pairs = as_pairs(items)
        for attempt in (1, 2):
            store = self.store()
            try:
                if store is None:
                    raise StoreError(f"the store {self.path} is unusable")
                store.append_encoded(pairs, self.state)
                break
            except StoreError as exc:
                if exc.damaged and attempt == 1 and self.replace_damaged(exc) is not None:
                    continue  # a damaged file was set aside: write to the new one
                self.counters.dropped_store_unusable += len(items)
                self._report_loss(exc)
                return False
        if self.state == SPOOLED:
            self.counters.spooled += len(items)
        else:
            self.counters.stored += len(items)
        return True


class ServerDestination:
    """Delivers to a Lunary server; spools what it cannot deliver and re-sends it later."""

    def __init__(self, config: Config, feed: Feed) -> None:
        self.config = config
        self.counters = feed.counters
        self.stop = feed.stopping
        self.client = IngestClient(config)
        # One rate-limit budget for every request the destination makes: the server counts
        # its lanes' and its spool's requests together.
        pacer = Pacer(feed.waited_until)
        self.sender = Sender(config, self.client, self.counters, self.stop, feed.backlogged, pacer)
        self.spool = Spool(config, self.counters, SPOOLED)
        runs = self.sender.server_runs
        self.main = Lane(config, runs, self.stop, pacer, feed.backlogged)
        self.lane = SlowLane(config, runs, self.stop, pacer)
        self.online = True
        # Whether an earlier process left spooled events is not known until the store is
        # read, on the worker's thread: at the first tick, before the first batch.
        self._spool_unknown = True
        self._next_look = 0.0  # when to look at a spool that could not be read
        self._next_probe = 0.0
        self._probe_interval = min(config.retry_timeout, PROBE_CAP_S)

    def __repr__(self) -> str:
        return f"ServerDestination({self.client!r})"

    @property
    def unreachable(self) -> str | None:
        """Why the server gives no answer, while it gives none (else ``None``)."""
        return self.main.unreachable or self.sender.unreachable

    def _look_at_spool(self) -> None:
        """Go offline (spooled events first) if an earlier process left some; if the store
        cannot be read yet (locked by another program), look again at the next tick."""
        pending = self.spool.has_pending()
        self._spool_unknown = pending is None
        if pending:
            self.online = False
            self._next_probe = 0.0

    def deliver(self, items: list[Item], settle: Settle) -> None:
        """Hand ``items`` to the main lane (the events the server would pause on to the
        slow lane), and return while they are sent: the worker encodes the next batch
        meanwhile, and waits only if this one is still in flight by then. What cannot be
        sent is spooled, after whatever the lanes could not send either."""
        self.tick()
        rest = items
        if self.online:
            now, slow = self.lane.divide(items, self.main.started_in_flight())
            if slow:
                self.lane.submit(slow, settle)
            rest = []
            if now:
                self._wait(self.main)  # one batch in flight on the main lane: order holds
                if self.online:
                    self.main.submit(now, settle)
                else:
                    rest = now
        if rest:
            self.finish()  # the lanes' events are older: they reach the spool first
            self.spool.write(rest)  # first: a write stuck on a locked store is taken over
            settle(rest)

    def finish(self) -> None:
        """Wait until both lanes have sent (or handed back) everything they hold."""
        self._wait(self.main)
        self._wait(self.lane)

    def _wait(self, lane: Lane) -> None:
        while not lane.idle and lane.wait(None):
            self._collect_lanes()

    def tick(self) -> None:
        self._collect_lanes()
        if self._spool_unknown and self.online and time.monotonic() >= self._next_look:
            self._look_at_spool()
        if not self.online and self.main.idle and time.monotonic() >= self._next_probe:
            try:
                self._resend_spool()
            except StoreError as exc:
                # A spool that cannot be read must not stop live delivery: set a damaged
                # file aside; otherwise send live and look at the spool again later.
                if exc.damaged:
                    self.spool.replace_damaged(exc)
                else:
                    logger.error("lunatrace: %s; sending new events directly meanwhile", exc)
                    # Its events are still to be sent: look again once the store may be free.
                    self._spool_unknown = True
                    self._next_look = time.monotonic() + STORE_REOPEN_S
                self.online = True

    def _collect_lanes(self) -> None:
        """Take back what the lanes learned: counts, a refused key, undelivered events
        (spooled, the main lane's first: they are older)."""
        for lane in (self.main, self.lane):
            undelivered, settle = lane.collect(self.counters)
            if lane.disabled is not None and self.sender.disabled is None:
                self.sender.disabled = lane.disabled  # one refusal stops every lane
                for other in (self.main, self.lane):
                    other.disable(lane.disabled)
            if undelivered:
                self._go_offline()
                self.spool.write(undelivered)
                settle(undelivered)

    def close(self, left: list[Item]) -> None:
        self.spool.write(left)
        self.client.close()
        self.main.close()
        self.lane.close()

    def _go_offline(self) -> None:
        """Spool from now on; probe the server again after the usual interval, or after the
        server's own ``Retry-After`` when it asked for longer."""
        self.online = False
        waits = (self.sender.retry_after, self.main.retry_after, self.lane.retry_after)
        wait = max(self._probe_interval, *(w or 0.0 for w in waits))
        self._next_probe = time.monotonic() + wait

    def _resend_spool(self) -> None:
        """Re-send spooled events oldest first; back online once none are left."""
        if self.sender.disabled is not None or self.stop.is_set():
            return
        store = self.spool.store()
        if store is None:
            self.online = True
            return
        if resend(store, self.sender, lease_owner(f"worker-{id(self)}"), include_local=False):
            self.online = True
        else:
            self._go_offline()  # not all delivered, or another process is re-sending it: later


# Where the embedded default's events go is said once per store and process (a forked
# child, which starts a destination of its own, does not say it again).
_ANNOUNCED: set[str] = set()


class StoreDestination:
    """The embedded default: every event goes to the local store, nothing to the network."""

    def __init__(self, config: Config, feed: Feed) -> None:
        self.config = config
        self.spool = Spool(config, feed.counters, LOCAL)

    def __repr__(self) -> str:
        return f"StoreDestination({str(self.config.store_path)!r})"

    def deliver(self, items: list[Item], settle: Settle) -> None:
        path = str(self.config.store_path)
        if path not in _ANNOUNCED:
            _ANNOUNCED.add(path)
            logger.info(
                "lunatrace: no project key set, so traces are kept locally in %s; "
                "list them with `lunatrace traces`, open one with `lunatrace show TRACE_ID`",
                path,
            )
        self.spool.write(items)  # first: a write stuck on a locked store is taken over
        settle(items)

    def tick(self) -> None:
        """Nothing to retry: the store is written synchronously."""

    def finish(self) -> None:
        """Nothing in progress: the store is written synchronously."""

    def close(self, left: list[Item]) -> None:
        """Keep ``left``; the store connection closes with the process."""
        self.spool.write(left)
