"""``@lunatrace.trace``: record plain Python functions as runs.

Works on functions, ``async def`` functions, generators and async generators. A
generator's run spans its whole iteration: it ends when the generator is exhausted or
closed, with the yielded items as output. Exceptions from the traced function are
recorded on its run and re-raised unchanged; lunatrace's own failures never are.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, overload

from lunatrace.api import get_tracer
from lunatrace.core import context
from lunatrace.core.events import new_run_id
from lunatrace.core.guard import failed
from lunatrace.core.tracer import Tracer

F = TypeVar("F", bound=Callable[..., Any])
MAX_YIELDED = 1_000


def _input_capturer(fn: Callable[..., Any]) -> Callable[[tuple[Any, ...], dict[str, Any]], Any]:
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return lambda args, kwargs: {"args": list(args), "kwargs": kwargs}

    def capture(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        try:
            bound = signature.bind_partial(*args, **kwargs)
        except TypeError:
            return {"args": list(args), "kwargs": kwargs}
        values = dict(bound.arguments)
        values.pop("self", None)
        values.pop("cls", None)
        return values

    return capture


class _Run:
    """Start/end bookkeeping shared by the four wrapper kinds.

    Its failures go to the guard in its hot-path form (``except ...: failed(...)``, no
    wrapper call): this runs for every traced call.
    """

    def __init__(self, options: _Options, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.options = options
        self.tracer: Tracer | None = None
        self.run_id = new_run_id()
        try:
            tracer = get_tracer()
            self.run_id = tracer.start_run(
                options.run_type,
                options.name,
                options.capture(args, kwargs) if options.capture_input else None,
                tags=options.tags,
                metadata=options.metadata,
            )
            self.tracer = tracer
        except Exception as exc:  # noqa: BLE001 - the traced call must run regardless
            failed("start of a traced function", exc, f"{options.name} runs untraced")

    # The end goes to the tracer of the moment: a ``configure()`` while the run was open
    # hands its open runs to the new tracer (see ``api.configure``), and a ``shutdown()``
    # leaves the next call to build one, which can fail.

    def end(self, output: Any) -> None:
        if self.tracer is not None:
            try:
                get_tracer().end_run(self.run_id, output if self.options.capture_output else None)
            except Exception as exc:  # noqa: BLE001 - the traced function's result passes regardless
                failed("end of a traced function", exc, f"the run of {self.options.name} stays open")

    def fail(self, exc: BaseException) -> None:
        if self.tracer is not None:
            try:
                get_tracer().error_run(self.run_id, exc)
            except Exception as own:  # noqa: BLE001 - the traced function's exception passes regardless
                failed("error of a traced function", own, f"the run of {self.options.name} stays open")


class _Options:
    def __init__(
        self,
        fn: Callable[..., Any],
        name: str | None,
        run_type: str,
        tags: Sequence[str] | None,
        metadata: Mapping[str, Any] | None,
        capture_input: bool,
        capture_output: bool,
    ) -> None:
        self.name = name or getattr(fn, "__qualname__", None) or getattr(fn, "__name__", "function")
        self.run_type = run_type
        self.tags = list(tags) if tags else None
        self.metadata = dict(metadata) if metadata else None
        self.capture_input = capture_input
        self.capture_output = capture_output
        self.capture = _input_capturer(fn)


def _keep(items: list[Any], item: Any) -> None:
    if len(items) < MAX_YIELDED:
        items.append(item)


def _wrap(fn: F, options: _Options) -> F:
    # The generator wrappers forward send(), throw() and the return value, so a traced
    # generator behaves exactly like the original (coroutine-style generators, yield from).
    if inspect.isasyncgenfunction(fn):

        @functools.wraps(fn)
        async def async_gen_wrapper(*args: Any, **kwargs: Any) -> Any:
            run = _Run(options, args, kwargs)
            items: list[Any] = []
            with context.run_scope(run.run_id):
                agen = fn(*args, **kwargs)
            sent: Any = None
            thrown: BaseException | None = None
            while True:
                token = context.push_run(run.run_id)
                try:
                    item = await (agen.asend(sent) if thrown is None else agen.athrow(thrown))
                except StopAsyncIteration:
                    break
                except BaseException as exc:
                    run.fail(exc)
                    raise
                finally:
                    context.pop_run(token)
                _keep(items, item)
                thrown = None
                try:
                    sent = yield item
                except GeneratorExit:
                    try:
                        await agen.aclose()
                    finally:
                        run.end(items)
                    raise
                except BaseException as exc:  # noqa: BLE001 - athrow(): hand it to the traced generator
                    thrown, sent = exc, None
            run.end(items)

        return async_gen_wrapper  # type: ignore[return-value]

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
            run = _Run(options, args, kwargs)
            items: list[Any] = []
            with context.run_scope(run.run_id):
                gen = fn(*args, **kwargs)
            sent: Any = None
            thrown: BaseException | None = None
            while True:
                with context.run_scope(run.run_id):
                    try:
                        item = gen.send(sent) if thrown is None else gen.throw(thrown)
                    except StopIteration as stop:
                        if stop.value is not None:
                            items.append(stop.value)  # after the items kept, however many were yielded
                        run.end(items)
                        return stop.value
                    except BaseException as exc:
                        run.fail(exc)
                        raise
                _keep(items, item)
                thrown = None
                try:
                    sent = yield item
                except GeneratorExit:
                    try:
                        gen.close()
                    finally:
                        run.end(items)
                    raise
                except BaseException as exc:  # noqa: BLE001 - throw(): hand it to the traced generator
                    thrown, sent = exc, None

        return gen_wrapper  # type: ignore[return-value]

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            run = _Run(options, args, kwargs)
            with context.run_scope(run.run_id):
                try:
                    result = await fn(*args, **kwargs)
                except BaseException as exc:
                    run.fail(exc)
                    raise
            run.end(result)
            return result

        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        run = _Run(options, args, kwargs)
        with context.run_scope(run.run_id):
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                run.fail(exc)
                raise
        run.end(result)
        return result

    return wrapper  # type: ignore[return-value]


@overload
def trace(fn: F) -> F: ...


@overload
def trace(
    fn: None = None,
    *,
    name: str | None = None,
    type: str = "chain",
    tags: Sequence[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    capture_input: bool = True,
    capture_output: bool = True,
) -> Callable[[F], F]: ...


def trace(
    fn: F | None = None,
    *,
    name: str | None = None,
    type: str = "chain",  # noqa: A002
    tags: Sequence[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    capture_input: bool = True,
    capture_output: bool = True,
) -> F | Callable[[F], F]:
    """Trace a function as a run of ``type`` (``chain``, ``agent``, ``tool``, ``llm``...).

    Use bare (``@trace``) or with options (``@trace(name="answer", type="agent")``).
    Calls nest: a traced function called inside another traced function, or inside a
    LangChain/LlamaIndex run traced by lunatrace, becomes its child.
    """

    def decorate(target: F) -> F:
        options = _Options(target, name, type, tags, metadata, capture_input, capture_output)
        return _wrap(target, options)

    return decorate(fn) if fn is not None else decorate
