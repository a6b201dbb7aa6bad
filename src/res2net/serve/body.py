"""Reading a request body without trusting the client.

Three ways a client can hurt a server before any JSON is parsed, each answered with a 4xx:

* a huge body: refused from ``Content-Length`` before a byte of it is read (413), and for
  chunked bodies, counted while streaming and refused the moment it passes the limit;
* a slow body: the whole body must arrive within ``timeout_s`` (408), so a client that
  trickles bytes cannot hold a connection and a buffer forever (uvicorn itself only
  times out idle keep-alive connections);
* a compressed body (``Content-Encoding: gzip`` / ``deflate``, which ``tritonclient`` can
  send): inflated with the same limit applied to the output, so a small "zip bomb"
  cannot expand past it.
"""

from __future__ import annotations

import asyncio
import zlib

from starlette.requests import ClientDisconnect, Request

from .errors import RequestError

_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


async def read_body(request: Request, *, limit: int, timeout_s: float) -> bytes:
    """The request body, decompressed, at most ``limit`` bytes; see the module docstring."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", *_WBITS):
        raise RequestError(f"unsupported Content-Encoding {encoding!r}; use gzip, deflate or none", status=415)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(f"request body of {declared} bytes exceeds the limit of {limit} bytes", status=413)
    try:
        async with asyncio.timeout(timeout_s):
            raw = await _collect(request, limit)
    except TimeoutError:
        raise RequestError(f"request body not received within {timeout_s:g} s", status=408) from None
    except ClientDisconnect:
        raise RequestError("client disconnected before sending the whole body") from None
    if encoding == "identity":
        return raw
    return _inflate(raw, encoding, limit)


async def _collect(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(f"request body exceeds the limit of {limit} bytes", status=413)
        chunks.append(chunk)
    return b"".join(chunks)


def _inflate(raw: bytes, encoding: str, limit: int) -> bytes:
    inflater = zlib.decompressobj(_WBITS[encoding])
    try:
        data = inflater.decompress(raw, limit + 1)
    except zlib.error as err:
        raise RequestError(f"request body is not valid {encoding} data: {err}") from None
    if len(data) > limit:
        raise RequestError(f"decompressed request body exceeds the limit of {limit} bytes", status=413)
    if not inflater.eof or inflater.unused_data:
        raise RequestError(f"request body is truncated or has data after the {encoding} stream")
    return data
