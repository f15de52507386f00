"""The listening test's web page: a Starlette app over a :class:`~audiogen.listening.ListeningSession`.

Routes (nothing a listener's browser receives names a clip, a folder or a set):

- ``GET /``: the page; ``GET /static/...``: its script and style (``audiogen/listening_page``).
- ``POST /api/start`` ``{"listener"}``: where the listener stands (answered, total, next trial).
- ``POST /api/answer`` ``{"listener", "trial", "score", "answer", "played_seconds"}``: stores the
  answer, then returns the new standing.
- ``GET /audio/{trial}``: the trial's clip as blind WAV (byte ranges honoured, so seeking works).

Starlette and uvicorn are imported inside the functions, so ``import audiogen`` stays cheap.
"""

from __future__ import annotations

import errno
import math
import re
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from audiogen.listening import ListeningSession, normalize_listener

PAGE_DIR = Path(__file__).with_name("listening_page")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The (start, end-exclusive) of a single ``Range: bytes=a-b`` header, None for the whole body.

    Raises:
        ValueError: a range that does not fit ``size`` (the server answers 416).
    """
    match = _RANGE.match(header.strip()) if header else None
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # "bytes=-N": the last N bytes
        start, end = max(0, size - int(last)), size
    else:
        start, end = int(first), min(size, int(last) + 1) if last else size
    if start >= size or start >= end:
        raise ValueError(f"range {header!r} outside {size} bytes")
    return start, end


def build_app(session: ListeningSession):
    """The Starlette app serving ``session`` to listeners' browsers."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    def error(message: str, status: int = 400) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    async def body_of(request: Request) -> dict:
        try:
            body = await request.json()
        except ValueError:
            raise ValueError("the request body is not JSON") from None
        if not isinstance(body, dict):
            raise ValueError("the request body is not a JSON object")
        return body

    async def page(request: Request) -> Response:
        # no-store: a listener who reloads after an upgrade gets the current page
        return FileResponse(PAGE_DIR / "index.html", headers={"Cache-Control": "no-store"})

    async def start(request: Request) -> JSONResponse:
        try:
            listener = normalize_listener((await body_of(request)).get("listener", ""))
        except ValueError as err:
            return error(str(err))
        return JSONResponse(await run_in_threadpool(session.state, listener))

    async def answer(request: Request) -> JSONResponse:
        try:
            body = await body_of(request)
            listener = normalize_listener(body.get("listener", ""))
            played = body.get("played_seconds")
            numeric = isinstance(played, (int, float)) and not isinstance(played, bool)
            played = float(played) if numeric and math.isfinite(played) and played >= 0 else None
            state = await run_in_threadpool(session.answer, listener, str(body.get("trial", "")),
                                            body.get("score"), body.get("answer"), played)
        except ValueError as err:
            return error(str(err))
        return JSONResponse(state)

    async def audio(request: Request) -> Response:
        from audiogen.audio import AudioError

        try:
            data = await run_in_threadpool(session.audio, request.path_params["trial"])
        except AudioError as err:
            # the listener is told nothing about the file; the person running the test is
            print(f"audiogen listen: cannot serve a clip: {err}", file=sys.stderr)
            return error("this clip cannot be played", 500)
        if data is None:
            return error("no such trial", 404)
        headers = {"Accept-Ranges": "bytes", "Cache-Control": "no-store"}
        try:
            span = byte_range(request.headers.get("range"), len(data))
        except ValueError:
            return Response(status_code=416, headers={"Content-Range": f"bytes */{len(data)}"})
        if span is None:
            return Response(data, media_type="audio/wav", headers=headers)
        start_byte, end_byte = span
        headers["Content-Range"] = f"bytes {start_byte}-{end_byte - 1}/{len(data)}"
        return Response(data[start_byte:end_byte], status_code=206, media_type="audio/wav", headers=headers)

    routes = [
        Route("/", page),
        Route("/api/start", start, methods=["POST"]),
        Route("/api/answer", answer, methods=["POST"]),
        Route("/audio/{trial}", audio),
        Mount("/static", StaticFiles(directory=PAGE_DIR), name="static"),
    ]
    return Starlette(routes=routes)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: a free one), bound before the server starts
    so that a port in use is one clear error, not a server log.

    Raises:
        ValueError: the port is in use, not ours to take, or the host does not resolve.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise ValueError(f"--host {host}: cannot resolve it ({err.strerror})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise ValueError(f"port {port} on {host} is in use; choose another with --port (0 picks a free one)") \
                from None
        if err.errno == errno.EACCES:
            raise ValueError(f"port {port} on {host}: permission denied; choose a port above 1023") from None
        raise ValueError(f"--host {host} --port {port}: cannot listen there ({err.strerror})") from None
    sock.set_inheritable(False)
    return sock


def page_url(sock: socket.socket) -> str:
    """The address to open for a bound socket."""
    host, port = sock.getsockname()[:2]
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def serve(session: ListeningSession, sock: socket.socket, announce: Callable[[str], None] = print) -> None:
    """Serve the test on a bound socket until Ctrl-C (which uvicorn turns back into KeyboardInterrupt)."""
    import uvicorn

    announce(page_url(sock))
    config = uvicorn.Config(build_app(session), log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])
