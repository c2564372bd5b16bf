"""What stands between a request and a route: the body-size limit, the bearer key, and one-line JSON errors.

Every refusal is ``{"error": "<one line>"}`` with a 4xx status; the server keeps serving.
"""

from __future__ import annotations

import hmac
import json
import logging

__all__ = ["BodyLimit", "BearerKey", "error_body", "install_error_handlers", "OPEN_PATHS"]

log = logging.getLogger("evolve.serve")

#: paths that need no key: the page (it asks for the key), its assets, the health check, the API schema
OPEN_PATHS = ("/", "/healthz", "/openapi.json", "/favicon.ico")
OPEN_PREFIXES = ("/static/",)


def error_body(message: str) -> bytes:
    return json.dumps({"error": " ".join(str(message).split())}, ensure_ascii=False).encode("utf-8")


async def _send_error(send, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = error_body(message)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """Refuse a request body over ``max_bytes`` with 413, whether it announces its length or streams it:
    the body is read (at most ``max_bytes + 1`` bytes) before the route sees it. ``per_path`` gives some paths
    another limit (the OpenAI facade: a chat client sends the whole conversation every turn)."""

    def __init__(self, app, max_bytes: int, per_path: dict[str, int] | None = None):
        self.app = app
        self.max_bytes = max_bytes
        self.per_path = dict(per_path or {})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        limit = self.per_path.get(scope.get("path", ""), self.max_bytes)
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    announced = int(value)
                except ValueError:
                    return await _send_error(send, 400, f"Content-Length: expected a number, got '{value.decode(errors='replace')}'")
                if announced > limit:
                    return await _send_error(send, 413, f"request body too large: expected at most {limit} bytes, got {announced}")
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return await _send_error(send, 413, f"request body too large: expected at most {limit} bytes, got more")
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


class BearerKey:
    """``Authorization: Bearer <key>`` on everything but :data:`OPEN_PATHS` (constant-time comparison)."""

    def __init__(self, app, key: str):
        self.app = app
        self.key = key.encode("utf-8")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES) or scope["method"] == "OPTIONS":
            return await self.app(scope, receive, send)
        given = b""
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                given = value
        scheme, _, token = given.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self.key):
            what = "no Authorization header" if not given else ("a wrong key" if scheme.lower() == b"bearer" else "another scheme")
            return await _send_error(send, 401, f"expected 'Authorization: Bearer <key>', got {what}",
                                     [(b"www-authenticate", b'Bearer realm="evolve"')])
        return await self.app(scope, receive, send)


def _validation_message(exc, content_type: str | None) -> tuple[int, str]:
    errors = exc.errors()
    if not errors:
        return 422, "invalid request"
    err = errors[0]
    if err.get("type") == "json_invalid":
        pos = err.get("loc", ("body", "?"))[-1]
        detail = (err.get("ctx") or {}).get("error", "invalid JSON")
        return 400, f"malformed JSON body: expected a JSON object, got {detail} at character {pos}"
    loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
    msg = err.get("msg", "invalid")
    if err.get("type") == "model_attributes_type":
        if isinstance(err.get("input"), bytes | bytearray):  # not parsed: JSON is read only when declared as JSON
            return 415, f"body: expected JSON sent with 'Content-Type: application/json', got '{content_type or 'no Content-Type'}'"
        return 422, f"body: expected a JSON object, got {type(err.get('input')).__name__}"
    got = err.get("input")
    shown = json.dumps(got, ensure_ascii=False)[:80] if got is not None and not isinstance(got, dict) else None
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return 422, f"{loc}: {msg}" + (f", got {shown}" if shown is not None else "") + more


def install_error_handlers(app) -> None:
    """Framework errors (validation, 404, 405) and unexpected ones become ``{"error": "<one line>"}``."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import Response
    from starlette.exceptions import HTTPException as StarletteHTTPException

    def reply(status: int, message: str, headers=None):
        return Response(error_body(message), status_code=status, media_type="application/json", headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request, exc):
        status, message = _validation_message(exc, request.headers.get("content-type"))
        return reply(status, message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, exc):
        message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such path: {request.method} {request.url.path}"
        if exc.status_code == 405:
            message = f"method {request.method} not allowed on {request.url.path}"
        return reply(exc.status_code, message, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request, exc):
        line = f"{type(exc).__name__}: " + " ".join(str(exc).split())
        log.error("evolve serve: %s %s failed: %s", request.method, request.url.path, line)
        return reply(500, f"internal error: {line}")
