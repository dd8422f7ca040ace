"""What flask_observe's own routes read of a request body: :data:`MAX_BODY` bytes at most.

None of them needs more than a sign-in form (a token of at most 1024 characters). Werkzeug's
form limits do not bound an urlencoded body (it is read whole) and ``MAX_CONTENT_LENGTH`` is
the host's to set, so these routes bound what they read themselves and leave the host's limits
and routes alone: a declared ``Content-Length`` above the cap is refused before anything is
read (:func:`refuse_large_body`, run before every flask_observe view), and a body without one
(``Transfer-Encoding: chunked``) is read no further than the cap (:func:`read_form`). Both
answer ``413``.
"""

from __future__ import annotations

import io

from flask import Response, request
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import FormDataParser

__all__ = ["MAX_BODY", "read_form", "refuse_large_body", "too_large"]

#: Bytes of a request body any flask_observe route reads.
MAX_BODY = 4 * 1024
_MESSAGE = f"request body too large (flask_observe's routes read at most {MAX_BODY} bytes)"


def too_large() -> Response:
    """The ``413`` answer (JSON). What is left of the body is the server's to discard."""
    return Response(
        b'{"error":"' + _MESSAGE.encode() + b'"}', status=413, mimetype="application/json"
    )


def refuse_large_body() -> Response | None:
    """``before_request`` of flask_observe's routes: ``413`` when the declared body is larger
    than :data:`MAX_BODY`; ``None`` (go on) otherwise."""
    length = request.content_length
    if length is not None and length > MAX_BODY:
        return too_large()
    return None


def read_body(limit: int = MAX_BODY) -> bytes:
    """The request's body, read no further than ``limit`` bytes.

    :raises RequestEntityTooLarge: it is longer (declared or as read).
    """
    length = request.content_length
    if length is not None and length > limit:
        raise RequestEntityTooLarge(_MESSAGE)
    stream = request.stream  # bounded by Content-Length and the host's MAX_CONTENT_LENGTH
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = stream.read(limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise RequestEntityTooLarge(_MESSAGE)
    return b"".join(chunks)


def read_form(limit: int = MAX_BODY) -> MultiDict[str, str]:
    """The request's form fields (urlencoded or multipart), from at most ``limit`` bytes.

    :raises RequestEntityTooLarge: the body is longer.
    """
    if request.mimetype not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return MultiDict()
    data = read_body(limit)
    parser = FormDataParser(max_form_memory_size=limit, max_form_parts=64, silent=True)
    _, form, _ = parser.parse(
        io.BytesIO(data), request.mimetype, len(data), dict(request.mimetype_params)
    )
    return form
