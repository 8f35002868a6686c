"""Reading a server's answer: the compiled parser where it can, the standard one where it cannot."""

from __future__ import annotations

import math

import pytest

from lunatrace.core.json_text import loads


def test_an_answer_is_read_as_the_standard_parser_reads_it() -> None:
    body = b'{"results":[{"id":"r1","success":true},{"id":"r2","success":false,"error":"\\u00e9"}]}'
    assert loads(body) == {
        "results": [{"id": "r1", "success": True}, {"id": "r2", "success": False, "error": "é"}]
    }


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            '{"results":[{"id":"r","success":false}]}'.encode("utf-16"),
            {"results": [{"id": "r", "success": False}]},
        ),
        (b'{"big":18446744073709551616}', {"big": 2**64}),
    ],
)
def test_what_orjson_refuses_is_still_read(body: bytes, expected: object) -> None:
    assert loads(body) == expected


def test_a_nan_in_an_answer_is_read_too() -> None:
    assert math.isnan(loads(b'{"score":NaN}')["score"])


def test_what_is_not_json_raises_value_error() -> None:
    with pytest.raises(ValueError):
        loads(b"<html>502 Bad Gateway</html>")
