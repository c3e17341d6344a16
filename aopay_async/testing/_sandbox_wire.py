"""The sandbox's bytes on the wire: request body, answer bodies, and the broken answers.

Owns: the shapes the API documents (success envelope, 401, the ``code``/``description``
gateway shape, a 400 for a body that is not a JSON object), the fixed error bodies, the
``Retry-After`` text and the two answers that break the connection (a TCP reset, a body cut
or dripped). Must never: decide *which* answer a request gets (that is
``SandboxServer._decide``), hold state, or serve real-looking personal data.
Why apart: bytes are checked against the README's examples one at a time; they were a
quarter of the 694-line ``_sandbox.py`` (issue 13).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import socket
import struct
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final

import msgspec
from aiohttp import web

__all__ = [
    "FIELDS",
    "FIXED_BODIES",
    "HTML_200",
    "HTML_502",
    "RequestBody",
    "body_decoder",
    "error_body",
    "fixed_answer",
    "gateway_body",
    "json_encoder",
    "missing_field",
    "reset_connection",
    "seconds_text",
    "stream_body",
    "success_body",
    "too_many",
]

#: A ``"slow"`` body drips in this many chunks.
_SLOW_CHUNKS: Final = 10

json_encoder = msgspec.json.Encoder()


def error_body(status: int, message: str) -> bytes:
    return json_encoder.encode({"responsecode": status, "status": False, "message": message})


def gateway_body(description: str) -> bytes:
    return json_encoder.encode(
        {
            "code": "207",
            "description": description,
            "merchantTrxnRefId": None,
            "token": None,
            "status": "False",
        }
    )


_UNAUTHORIZED = error_body(401, "Unauthorized: invalid CompanyCode or RegistrationID")
FIXED_BODIES: Final[Mapping[str, tuple[int, bytes]]] = {
    "500": (500, error_body(500, "Internal Server Error")),
    "502": (502, error_body(502, "Bad Gateway")),
    "503": (503, error_body(503, "Service Temporarily Unavailable")),
    "401": (401, _UNAUTHORIZED),
    "gateway_error": (200, gateway_body("Transaction could not be processed, try again")),
}
HTML_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)
HTML_200 = (
    b"<!DOCTYPE html>\n<html><head><title>Under maintenance</title></head>\n"
    b"<body><h1>We'll be back soon</h1><p>The service is under scheduled maintenance."
    b"</p></body></html>\n"
)
_SUCCESS_HEAD = b'{"error_code":"SPC-200","status":"SUCCESS","message":"success","soft_ref_id":"'
_SUCCESS_MID = b'","data":{"result":'
_SUCCESS_TOKEN = b',"status":"success","message":"ok","access_token":"'
_SUCCESS_TAIL = b'"}}'
_LETTERS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class RequestBody(msgspec.Struct):
    """The request body's four fields, any JSON type (checked by hand for the right answer)."""

    client_order_id: Any = None
    cibil_id: Any = None
    RegistrationID: Any = None  # the wire name
    CompanyCode: Any = None  # the wire name


body_decoder = msgspec.json.Decoder(RequestBody)
FIELDS: Final = ("client_order_id", "cibil_id", "RegistrationID", "CompanyCode")


def seconds_text(seconds: float) -> str:
    """*seconds* in plain decimal, exactly as given: ``0.25``, ``1``, ``1234567``.

    Not ``f"{seconds:g}"``: that keeps six digits and switches to exponent form, so
    ``1234567`` became ``"1.23457e+06"``, a different and unusual ``Retry-After``.
    """
    text = format(Decimal(repr(float(seconds))), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def missing_field(body: RequestBody) -> bytes:
    for name in FIELDS:
        value = getattr(body, name)
        if value is None or (isinstance(value, str) and not value.strip()):
            return gateway_body(f"{name} is Required")
        if not isinstance(value, str):
            return gateway_body(f"{name} is Invalid")
    raise AssertionError("unreachable: called only for a body with a bad field")


def reset_connection(request: web.BaseRequest) -> None:
    """Drop the connection with a TCP RST, so the client sees a reset, not a clean close."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            # Linger on, timeout 0: close() discards the buffer and sends RST.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def too_many(retry_after: float | None, wait: float) -> web.Response:
    """A 429 whose ``Retry-After`` is *retry_after* when set, else from *wait*.

    *wait* is the bucket's time to the next token (0 for a faulted or scripted 429).
    """
    # Retry-After is whole seconds: the bucket's wait rounded up, at least 1.
    value = str(max(1, math.ceil(wait))) if retry_after is None else seconds_text(retry_after)
    return web.Response(
        status=429,
        body=error_body(429, f"Too Many Requests: retry after {value} seconds"),
        content_type="application/json",
        headers={"Retry-After": value},
    )


def fixed_answer(outcome: str, body: RequestBody | None) -> web.Response | None:
    """The answer of an outcome whose bytes do not depend on the customer, else None."""
    fixed = FIXED_BODIES.get(outcome)
    if fixed is not None:
        return web.Response(status=fixed[0], body=fixed[1], content_type="application/json")
    if outcome == "bad_request":
        message = "The request body must be a JSON object with client_order_id, cibil_id, "
        message += "RegistrationID and CompanyCode"
        return web.Response(
            status=400, body=error_body(400, message), content_type="application/json"
        )
    if outcome == "missing_field":
        assert body is not None
        return web.Response(body=missing_field(body), content_type="application/json")
    if outcome == "html":
        return web.Response(status=502, body=HTML_502, content_type="text/html")
    if outcome == "html200":
        return web.Response(body=HTML_200, content_type="text/html")
    return None


def success_body(stamp: bytes, result: bytes, number: int, tag: str) -> bytes:
    """The success envelope around *result* (``data.result``); *tag* seeds its two ids."""
    digest = hashlib.blake2b(tag.encode(), digest_size=32).digest()
    # Like the seed's "23081815284725JQJCESXDTP2": the fetch time, two digits of the
    # request number, then 11 capital letters.
    letters = b"%02d" % (number % 100) + bytes(_LETTERS[b % 26] for b in digest[20:31])
    token = digest[:20].hex().encode()
    return b"".join(
        (
            _SUCCESS_HEAD,
            stamp,
            letters,
            _SUCCESS_MID,
            result,
            _SUCCESS_TOKEN,
            token,
            _SUCCESS_TAIL,
        )
    )


async def stream_body(
    request: web.Request, payload: bytes, outcome: str, slow_seconds: float
) -> web.StreamResponse:
    """A ``"truncate"`` (half of *payload*, then FIN) or ``"slow"`` (dripped) 200."""
    response = web.StreamResponse()
    response.content_type = "application/json"
    response.content_length = len(payload)
    if outcome == "slow":
        # Tells a test which 200s were dripped without timing them: a timed guess
        # ("the body took over 0.2 s") misread ordinary answers on a loaded machine
        # ({'ok': 1738} != {'ok': 1740} in a full run). A client ignores it.
        response.headers["X-Sandbox-Fault"] = "slow"
    await response.prepare(request)
    try:
        if outcome == "truncate":
            await response.write(payload[: len(payload) // 2])
            if request.transport is not None:
                request.transport.close()  # a clean FIN after half the promised bytes
            return response
        # "slow": the whole body, a chunk at a time.
        step = -(-len(payload) // _SLOW_CHUNKS)
        for start in range(0, len(payload), step):
            await asyncio.sleep(slow_seconds / _SLOW_CHUNKS)
            await response.write(payload[start : start + step])
        await response.write_eof()
    except ConnectionError:
        pass  # the client went away mid-body: nothing more to send
    return response
