"""Delivering a batch to the server: pacing to its rate limit, retries, backoff, 413
splits, per-event results.

Used by the background worker, by the spool drain and by ``lunatrace push``, so all three
honour the same rules: one request at a time, a batch that must be retried is retried
before anything newer, and whatever cannot be delivered is handed back to the caller
(to be spooled) rather than dropped.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable

from lunatrace.core.config import Config, mask_key, redact
from lunatrace.core.transport.batch import Item
from lunatrace.core.transport.delivery import Counters
from lunatrace.core.transport.http import DUPLICATE_START, Answer, IngestClient, Kind, encode_batch
from lunatrace.core.transport.pacing import Pacer
from lunatrace.core.transport.stalls import ServerRuns

logger = logging.getLogger("lunatrace")

BACKOFF_BASE_S = 0.25
BACKOFF_CAP_S = 30.0
MAX_FAILURE_LOGS = 20
PAUSE_SLICE_S = 0.05
# The server's answer to a public key on a route that is not the ingestion endpoint (a
# wrong ``api_url`` path): a 401 like a bad key's, but the key is not the problem.
WRONG_ROUTE = "This route requires a private API key"
REFUSED_RUNS = 10_000


def backoff(attempt: int, retry_after: float | None) -> float:
    """Exponential backoff with jitter; a server's ``Retry-After`` wins when it is longer."""
    base = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempt - 1))
    wait = random.uniform(base / 2, base)
    return max(wait, retry_after) if retry_after is not None else wait


class Sender:
    """Sends batches through an :class:`IngestClient`, never raising."""

    def __init__(
        self,
        config: Config,
        client: IngestClient,
        counters: Counters,
        stop: threading.Event,
        backlogged: Callable[[], bool] = lambda: False,
        pacer: Pacer | None = None,
    ) -> None:
        self.config = config
        self.backlogged = backlogged  # True: stop retrying early, events are piling up
        self.pacer = pacer or Pacer()  # shared by the senders of a destination
        self.client = client
        self.counters = counters
        self.stop = stop
        self.disabled: str | None = None  # why sending stopped for good (key or URL refused)
        self.requests = 0  # requests made, retries and 413 halves included
        self.unreachable: str | None = None  # why the server gives no answer, while it gives none
        self.retry_after: float | None = None  # the last Retry-After of a batch given up on
        self._refused_runs: OrderedDict[str, None] = OrderedDict()  # runs whose start was refused
        self.server_runs = ServerRuns()
        self._failure_logs = 0

    def send(
        self,
        items: list[Item],
        *,
        deadline: float,
        retry: bool,
        on_settled: Callable[[list[Item]], bool],
    ) -> list[Item]:
        """Deliver ``items`` in order; return those not delivered (empty on success).

        Every request waits its turn under the server's rate limit (see ``pacing``); that
        wait moves ``deadline`` on, since it is no failure. Retries end at ``deadline``
        (monotonic seconds), when :attr:`stop` is set, or when :attr:`backlogged` says
        events are piling up behind this batch (they are better kept in the spool than
        dropped from a full queue).
        ``retry`` says the events may have reached the server before, so a duplicate
        start counts as delivered. ``on_settled`` is called with each part the server has
        answered for good (delivered, or refused in a way no retry can fix); it returns
        ``False`` if the part was meanwhile kept elsewhere (a shutdown took it over), and
        the part is then not counted as sent.
        """
        parts = [items]
        attempt = 0
        while parts:
            part = parts[0]
            if self.disabled is not None or self.stop.is_set():
                return [item for p in parts for item in p]
            waited = self.pacer.wait_turn(self.stop)
            if waited is None:
                return [item for p in parts for item in p]
            if waited:
                self.counters.paced += 1
                deadline += waited
            # Reaching the server is bounded by the deadline; its answer is awaited as long
            # as the batch will take it (see ``stalls``): given up on earlier, the batch
            # would be sent again while the server is still writing it.
            self.requests += 1
            answer = self.client.post(
                encode_batch([item.body or "" for item in part]),
                connect=max(deadline - time.monotonic(), 0.05),
                read=self.server_runs.read_timeout(part, self.client.timeout),
            )
            self.pacer.observe(answer.budget)
            if answer.kind is Kind.OK and len(answer.results) < len(part):
                # One result per event, or the server did not take them all: not a success.
                covered = f"the answer covers {len(answer.results)} of {len(part)} events"
                answer = Answer(Kind.RETRY, answer.status, detail=covered)
            if answer.kind is Kind.OK:
                self.unreachable = self.retry_after = None
                parts.pop(0)
                failures = self._read_results(answer, retry or attempt > 0, part)
                if on_settled(part):
                    self.counters.sent += len(part) - failures
            elif answer.kind is Kind.TOO_LARGE and len(part) > 1:
                half = len(part) // 2
                parts[0:1] = [part[:half], part[half:]]
            elif answer.kind is Kind.TOO_LARGE or answer.kind is Kind.REFUSED:
                parts.pop(0)
                self._refused(part, answer)
                on_settled(part)
            elif answer.kind is Kind.CONFIG:
                self._disable(answer)
            else:
                self._note_unreachable(answer)
                self.counters.rate_limited += answer.status == 429
                attempt += 1
                wait = backoff(attempt, answer.retry_after)
                if time.monotonic() + wait > deadline or self.backlogged():
                    self.retry_after = answer.retry_after
                    logger.warning(
                        "lunatrace: the server at %s is unavailable (%s); %d event(s) kept for later",
                        redact(self.config.api_url),
                        _describe(answer),
                        sum(len(p) for p in parts),
                    )
                    return [item for p in parts for item in p]
                logger.debug("lunatrace: %s; retrying in %.2f s", _describe(answer), wait)
                self.counters.retried += len(part)
                if not self._pause(wait):
                    return [item for p in parts for item in p]
        return []

    def _note_unreachable(self, answer: Answer) -> None:
        """Say once, at the first attempt, that the server cannot be reached, and where the
        events go meanwhile: an exit a few seconds later would otherwise be all there is."""
        if answer.status is not None or self.unreachable is not None:
            return
        self.unreachable = _describe(answer)
        logger.warning(
            "lunatrace: cannot reach the server at %s (%s); events are retried for up to %.0f s, then "
            "kept in %s (`lunatrace push` sends them later)",
            redact(self.config.api_url),
            self.unreachable,
            self.config.retry_timeout,
            self.config.store_path,
        )

    def _pause(self, seconds: float) -> bool:
        """Wait before a retry; ``False`` if told to stop or events pile up meanwhile."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if self.stop.wait(min(left, PAUSE_SLICE_S)) or self.backlogged():
                return False
        return True

    def _read_results(self, answer: Answer, retry: bool, part: list[Item]) -> int:
        """Log the events the server refused; return how many events were not stored.

        That includes the events of a run whose start the server refused: it answers
        ``success`` to the run's end and error, but has no run to apply them to.
        """
        failures = 0
        refused: Counter[str] = Counter()
        for result in answer.results:
            if result.get("success", True):
                continue
            error = str(result.get("error", "unknown error"))
            if retry and error == DUPLICATE_START:
                continue  # stored by an earlier attempt whose answer was lost
            failures += 1
            refused[str(result.get("id"))] += 1
            self._log_failure(
                "lunatrace: the server refused the event for run %s: %s", result.get("id"), error
            )
        if refused or self._refused_runs:
            failures += self._lost_with_their_start(part, refused)
        self.server_runs.answered(part, refused)
        self.counters.failed_refused += failures
        return failures

    def _lost_with_their_start(self, part: list[Item], refused: Counter[str]) -> int:
        """How many events of ``part`` the server answered for but could not apply, because
        their run's start was refused (in this request, or an earlier one)."""
        events: dict[str, list[str]] = {}
        for item in part:
            header = item.header
            if header is not None:
                events.setdefault(header[2], []).append(header[1])
        lost = 0
        for run_id, kinds in events.items():
            if refused[run_id] and "start" in kinds:
                self._refused_runs[run_id] = None
                if len(self._refused_runs) > REFUSED_RUNS:
                    self._refused_runs.popitem(last=False)
            if run_id in self._refused_runs:
                lost += max(0, len(kinds) - refused[run_id])
        return lost

    def _refused(self, part: list[Item], answer: Answer) -> None:
        self.counters.failed_refused += len(part)
        self._log_failure(
            "lunatrace: the server refused %d event(s) for good (%s); they are not sent again",
            len(part),
            _describe(answer),
        )

    def _disable(self, answer: Answer) -> None:
        url = redact(self.config.ingest_url)
        if answer.status is not None and 300 <= answer.status < 400:
            problem = f"{url} is not the ingestion endpoint (set api_url to its new place)"
        elif answer.status == 404 or WRONG_ROUTE in answer.detail:
            problem = (
                f"no ingestion endpoint at {url} (check api_url: it is the server's"
                " base URL, without /v1/runs/ingest or any other path)"
            )
        else:
            problem = f"project key {mask_key(self.config.project_key)} was refused"
        self.disabled = f"{problem} ({_describe(answer)})"
        logger.error(
            "lunatrace: %s; sending stopped and events are kept in %s. Fix the configuration, "
            "then run `lunatrace push`.",
            self.disabled,
            self.config.store_path,
        )

    def _log_failure(self, message: str, *args: object) -> None:
        self._failure_logs += 1
        if self._failure_logs <= MAX_FAILURE_LOGS:
            logger.warning(message, *args)
        elif self._failure_logs == MAX_FAILURE_LOGS + 1:
            logger.warning("lunatrace: more refused events; see lunatrace.stats() for the count")


def _describe(answer: Answer) -> str:
    status = f"HTTP {answer.status}" if answer.status is not None else "no answer"
    return redact(f"{status}: {answer.detail}") if answer.detail else status  # an error can name a URL
