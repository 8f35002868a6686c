"""The context stack: propagation across threads and tasks, restore on exit and on errors."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

import lunatrace
from lunatrace.core import context, guard
from lunatrace.core.transport import MemorySink


class Boom(Exception):
    pass


def state() -> tuple[str | None, tuple[str, ...], dict[str, object]]:
    user = context.current_user()
    return (user.user_id if user else None, context.current_tags(), dict(context.current_metadata()))


def test_identify_tags_metadata_apply_inside_and_restore_after() -> None:
    assert state() == (None, (), {})
    with lunatrace.identify("u1", {"plan": "free"}) as user:
        assert user.props == {"plan": "free"}
        with lunatrace.tags(["a", "b"]), lunatrace.metadata({"k": 1}):
            assert state() == ("u1", ("a", "b"), {"k": 1})
            with (
                lunatrace.identify(2),
                lunatrace.tags("c"),
                lunatrace.tags(["a"]),
                lunatrace.metadata({"k": 2}),
            ):
                assert state() == ("2", ("a", "b", "c"), {"k": 2})
            assert state() == ("u1", ("a", "b"), {"k": 1})
    assert state() == (None, (), {})


def test_contexts_restore_when_the_body_raises() -> None:
    with lunatrace.identify("outer"), lunatrace.tags(["t0"]), lunatrace.metadata({"m": 0}):
        with (
            pytest.raises(Boom),
            lunatrace.identify("inner"),
            lunatrace.tags(["t1"]),
            lunatrace.metadata({"m": 1}),
            context.run_scope("6f1c1d9e-3b8a-4f57-9d2a-0d7c2b1e4a10"),
        ):
            raise Boom()
        assert state() == ("outer", ("t0",), {"m": 0})
        assert context.current_run_id() is None
    assert state() == (None, (), {})


def test_metadata_values_are_copied_not_aliased() -> None:
    values = {"k": 1}
    with lunatrace.metadata(values):
        values["k"] = 2
        assert context.current_metadata() == {"k": 1}


def test_context_follows_copy_context_into_threads() -> None:
    with lunatrace.identify("u"), lunatrace.tags(["t"]), context.run_scope("run-a"):
        ctx = contextvars.copy_context()
        with ThreadPoolExecutor(max_workers=2) as pool:
            copied = pool.submit(ctx.run, lambda: (state(), context.current_run_id())).result()
            plain = pool.submit(lambda: (state(), context.current_run_id())).result()
    assert copied == (("u", ("t",), {}), "run-a")
    assert plain == ((None, (), {}), None)  # a pool thread without the copied context


def test_threads_do_not_see_each_others_context() -> None:
    barrier = threading.Barrier(8)
    seen: dict[int, tuple[object, ...]] = {}

    def work(n: int) -> None:
        with lunatrace.identify(f"user-{n}"), lunatrace.tags([f"t{n}"]), context.run_scope(f"run-{n}"):
            barrier.wait()  # everyone is inside their own scope at once
            seen[n] = (state(), context.current_run_id())

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == {n: ((f"user-{n}", (f"t{n}",), {}), f"run-{n}") for n in range(8)}


async def test_asyncio_tasks_have_their_own_context() -> None:
    async def task(n: int) -> tuple[object, ...]:
        with lunatrace.identify(f"user-{n}"), context.run_scope(f"run-{n}"):
            await asyncio.sleep(0.01 * (3 - n))
            return (state()[0], context.current_run_id())

    with lunatrace.identify("parent"):
        results = await asyncio.gather(*(task(n) for n in range(3)))
        assert state()[0] == "parent"
    assert results == [(f"user-{n}", f"run-{n}") for n in range(3)]


@pytest.fixture
def framework() -> Iterator[list[str | None]]:
    """A stand-in framework whose 'active run' is whatever the test puts in the list."""
    active: list[str | None] = [None]

    def resolver() -> str | None:
        return active[0]

    context.register_framework_resolver(resolver)
    yield active
    context._resolvers.remove(resolver)


def test_framework_run_outside_any_lunatrace_frame(framework: list[str | None]) -> None:
    assert context.current_run_id() is None
    framework[0] = "fw-1"
    assert context.current_run_id() == "fw-1"
    assert context.current_lunatrace_run_id() is None


def test_framework_run_started_inside_a_frame_is_innermost(framework: list[str | None]) -> None:
    framework[0] = "fw-outer"
    with context.run_scope("lt-1") as frame:
        assert frame.framework_runs[-1] == "fw-outer"  # other integrations may have resolvers too
        assert context.current_run_id() == "lt-1"  # the decorated function is inside fw-outer
        framework[0] = "fw-inner"  # the framework starts a run inside the function
        assert context.current_run_id() == "fw-inner"
        assert context.current_lunatrace_run_id() == "lt-1"
        assert context.current_frame() is frame


def test_a_raising_resolver_is_ignored(framework: list[str | None]) -> None:
    def broken() -> str | None:
        raise RuntimeError("framework internals changed")

    context.register_framework_resolver(broken)
    try:
        framework[0] = "fw"
        assert context.current_run_id() == "fw"
        assert context.current_run_id() == "fw"
    finally:
        context._resolvers.remove(broken)
    site = "run resolver test_a_raising_resolver_is_ignored.<locals>.broken"
    assert guard.failures() == {site: 2}  # counted each time, not raised


def test_context_tags_and_user_reach_the_events(memory_sink: MemorySink) -> None:
    tracer = lunatrace.get_tracer()
    with lunatrace.identify("ada", {"tier": "gold"}), lunatrace.tags(["ctx"]):
        inside = tracer.start_run("chain", "inside", None, tags=["own"])
        explicit = tracer.start_run("chain", "explicit", None, user_id="bob")
    outside = tracer.start_run("chain", "outside", None)
    starts = {e["runId"]: e for e in memory_sink.events}
    assert starts[inside]["tags"] == ["ctx", "own"]
    assert (starts[inside]["userId"], starts[inside]["userProps"]) == ("ada", {"tier": "gold"})
    assert starts[explicit]["userId"] == "bob" and "userProps" not in starts[explicit]
    assert {"tags", "userId", "userProps"}.isdisjoint(starts[outside])
