"""``flush()`` says True only when everything emitted before it was delivered or kept."""

from __future__ import annotations

from pathlib import Path

import lunatrace


def test_flush_is_false_when_events_were_lost_since_the_last_flush(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store's folder should be")
    lunatrace.configure(store_path=blocker / "events.db", flush_interval=0.05)
    lunatrace.trace(lambda: "lost")()
    assert lunatrace.flush(10) is False
    assert lunatrace.stats()["dropped"] == 2
    assert lunatrace.flush(10) is True  # nothing emitted, nothing lost since
