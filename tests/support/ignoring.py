"""lunatrace configured with ignore rules, delivering to a fake Lunary server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lunatrace
from tests.conftest import FAST_DELIVERY
from tests.support.fake_lunary import FakeLunary


def configure_ignoring(server: FakeLunary, tmp_path: Path, ignore: Any) -> None:
    """Send to ``server`` with ``ignore`` as the configured rules (read with ``events_of``)."""
    lunatrace.configure(
        project_key=server.key,
        api_url=server.url,
        store_path=tmp_path / "spool-ignoring" / "events.db",
        ignore=ignore,
        **FAST_DELIVERY,
    )
