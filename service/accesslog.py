"""The access log: one line per request on stdout, written off the event loop.

uvicorn's access log runs the whole logging machinery for every request on the event
loop (a LogRecord, a caller lookup, a copy of the record, a status-phrase lookup, a write
and a flush): as shipped it cost a third of the throughput of a one-instance /predict.
Here the event loop only appends the request's fields to a deque (service.middleware,
where the status, latency and model are known anyway); a background thread formats what
has gathered every :data:`FLUSH_SECONDS` and writes it in one call. The lines keep
uvicorn's shape, with the latency and the model added::

    INFO:     127.0.0.1:50312 - "POST /predict HTTP/1.1" 200 1.42 ms medical

The lines go to the stream of the ``service.access`` logger's handler (``serve``'s
logging configuration: stdout, as uvicorn's access log), at info level: without such a
handler (the app run in-process, as the tests do) or at a quieter level there is no
access log. Lines reach it at most :data:`FLUSH_SECONDS` after their request, and the rest at
shutdown. Fields: client address, method, path (with the query string), HTTP version,
status, time from the request reaching the service to its answer, and the model that
answered (``-`` for none).
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import TextIO

from starlette.types import Scope

LOGGER = "service.access"
FLUSH_SECONDS = 0.2
# At most this many lines wait (a stalled stdout must not grow the process without end:
# past it the oldest lines are dropped).
MAX_PENDING = 100_000

# client, method, path, query string, HTTP version, status, seconds, model
_Entry = tuple[tuple[str, int] | None, str, str, bytes, str, int, float, str]


class AccessLog:
    """Collects one entry per request (:meth:`record`, on the event loop) and writes them
    from its own thread between :meth:`start` and :meth:`stop`."""

    def __init__(self, stream: TextIO, flush_seconds: float = FLUSH_SECONDS):
        self._stream = stream
        self._flush_seconds = flush_seconds
        self._pending: collections.deque[_Entry] = collections.deque(maxlen=MAX_PENDING)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def configured(cls) -> AccessLog | None:
        """The access log the logging configuration asks for, or None."""
        logger = logging.getLogger(LOGGER)
        if not logger.isEnabledFor(logging.INFO):
            return None
        streams = [h.stream for h in logger.handlers if isinstance(h, logging.StreamHandler)]
        return cls(streams[0]) if streams else None

    def record(self, scope: Scope, status: int, seconds: float, model: str) -> None:
        # deque.append is atomic: no lock between the event loop and the writer.
        self._pending.append(
            (
                scope.get("client"),
                scope["method"],
                scope["path"],
                scope.get("query_string", b""),
                scope.get("http_version", "1.1"),
                status,
                seconds,
                model,
            )
        )

    def start(self) -> None:
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="access-log", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Write what is left and end the thread."""
        if self._thread is not None:
            self._stopping.set()
            self._thread.join()
            self._thread = None
        self.flush()

    def _run(self) -> None:
        while not self._stopping.wait(self._flush_seconds):
            self.flush()

    def flush(self) -> None:
        pending = self._pending
        lines = []
        while pending:
            lines.append(format_entry(pending.popleft()))
        if lines:
            self._stream.write("".join(lines))
            self._stream.flush()


def format_entry(entry: _Entry) -> str:
    client, method, path, query, version, status, seconds, model = entry
    if query:
        path = f"{path}?{query.decode('latin-1')}"
    if not path.isprintable():
        # A decoded path may hold a line break: one request stays one line.
        path = path.encode("unicode_escape").decode("ascii")
    peer = f"{client[0]}:{client[1]}" if client else "-"
    return (
        f'INFO:     {peer} - "{method} {path} HTTP/{version}" {status} '
        f"{seconds * 1000:.2f} ms {model or '-'}\n"
    )
