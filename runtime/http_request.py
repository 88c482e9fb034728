"""What a request to `edgelite serve` carries: the image of a multipart/form-data body, `?top_k=`, and the
errors of both as an HTTP status with one line for the client."""
from __future__ import annotations

import re
from email.parser import BytesParser
from email.policy import HTTP
from email.utils import collapse_rfc2231_value
from urllib.parse import parse_qs

from .errors import EdgeliteError

TOP_K = 5


class RequestError(Exception):
    """An answer other than 200: its HTTP status and one line for the client."""

    def __init__(self, status: int, message: str, allow: str | None = None):
        super().__init__(message)
        self.status, self.message, self.allow = status, message, allow


def image_from_multipart(body: bytes, content_type: str) -> bytes:
    """The bytes of the `image` field of a multipart/form-data body (RFC 7578).

    The email package parses the headers: the boundary (quoted or not) and each part's
    Content-Disposition. The parts are cut out with bytes.find on CRLF + "--" + boundary: email's
    body parser goes line by line and took 60 ms per MB of JPEG on this machine (a quarter of a
    second for a phone's photo), bytes.find well under 1 ms.
    """
    boundary = _headers(f"Content-Type: {content_type}".encode("latin-1", "replace")).get_param("boundary")
    if not boundary:
        raise RequestError(400, "malformed multipart body: no boundary in its Content-Type")
    delimiter = b"\r\n--" + collapse_rfc2231_value(boundary).encode("latin-1", "replace")
    data = b"\r\n" + body  # the first delimiter may open the body: give it its CRLF too
    at = data.find(delimiter)
    if at < 0:
        raise RequestError(400, "malformed multipart body: the boundary of its Content-Type does not occur in it")
    while at >= 0:
        after = at + len(delimiter)
        if data.startswith(b"--", after):
            raise RequestError(400, "the multipart body has no field named 'image'")
        eol = data.find(b"\r\n", after)  # only transport padding may follow a delimiter on its line
        end = data.find(delimiter, eol) if eol >= 0 and not data[after:eol].strip(b" \t") else -1
        if end < 0:
            break
        head, sep, content = data[eol:end].partition(b"\r\n\r\n")  # from the CRLF: a part may have no headers
        if not sep:
            break
        name = _headers(head[2:]).get_param("name", header="content-disposition")
        if name is not None and collapse_rfc2231_value(name) == "image":
            if not content:
                raise RequestError(400, "the multipart field 'image' is empty")
            return content
        at = end
    raise RequestError(400, "malformed multipart body: no closing boundary")


def _headers(block: bytes):
    """A block of MIME header lines, parsed by the email package."""
    return BytesParser(policy=HTTP).parsebytes(block.strip(b"\r\n") + b"\r\n\r\n", headersonly=True)


def parse_top_k(query: str, classes: int) -> int:
    """?top_k=N, a whole number from 1 to the number of classes (default 5, or all if fewer)."""
    values = parse_qs(query, keep_blank_values=True).get("top_k")
    if not values:
        return min(TOP_K, classes)
    raw = values[-1]
    if not re.fullmatch(r"[0-9]{1,9}", raw) or not 1 <= int(raw) <= classes:
        raise RequestError(400, f"top_k must be a whole number from 1 to {classes}, not {raw!r}")
    return int(raw)


def image_error(exc: EdgeliteError) -> RequestError:
    """The runtime's one line about a bad image -> 413 (over the pixel limit) or 422 (unreadable)."""
    message = re.sub(r" <_io\.BytesIO object at 0x[0-9a-f]+>", "", str(exc)).replace("<bytes>: ", "")
    return RequestError(413 if "pixel limit" in message else 422, message)
