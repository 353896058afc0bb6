"""The fault proxy's request parser: requests are found at their boundaries whatever the bodies
and however the bytes are split, and what is not HTTP passes through untouched."""

from __future__ import annotations

import pytest

from tests.reliability.proxy import _Head, _RequestParser

CHUNKED = (b"PATCH /v2/r/blobs/uploads/u?x=1 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nhello\r\n3;ext=1\r\nGET\r\n0\r\n\r\n")
SIZED = b"PUT /2015-03-31/functions/f/code HTTP/1.1\r\nContent-Length: 11\r\nX-Amz-Target: A.B\r\n\r\nGET / HTTP/"
BARE = b"GET /v2/ HTTP/1.1\r\nHost: h\r\n\r\n"
STREAM = CHUNKED + SIZED + BARE


def parse(data: bytes, split: int) -> tuple[list[tuple[str, str, dict[str, str]]], bytes]:
    parser = _RequestParser()
    heads, passed = [], b""
    for piece in (data[i:i + split] for i in range(0, len(data), split)):
        for part in parser.feed(piece):
            if isinstance(part, _Head):
                heads.append((part.method, part.path, part.headers))
                passed += part.raw
            else:
                passed += part
    return heads, passed


@pytest.mark.parametrize("split", [1, 2, 7, 64, len(STREAM)])
def test_requests_are_found_at_their_boundaries_however_the_bytes_arrive(split: int) -> None:
    heads, passed = parse(STREAM, split)

    assert [(m, p) for m, p, _ in heads] == [("PATCH", "/v2/r/blobs/uploads/u?x=1"),
                                             ("PUT", "/2015-03-31/functions/f/code"), ("GET", "/v2/")]
    assert heads[1][2]["x-amz-target"] == "A.B"  # a body that looks like a request is a body
    assert passed == STREAM


def test_bytes_that_are_not_http_pass_through_untouched() -> None:
    hello = bytes([0x16, 0x03, 0x01, 0x02, 0x00]) + b"\x01" * 40  # a TLS ClientHello's start

    heads, passed = parse(hello, 3)

    assert heads == [] and passed == hello
