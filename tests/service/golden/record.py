"""Record the golden answers: every request of ``corpus.build()`` sent to the app over the
shipped models (in process, Starlette's TestClient), one line per request in
``answers.jsonl``. Run from the repository root::

    .venv/bin/python -m tests.service.golden.record

What varies from run to run, and only that, is normalised (``normalise``):
- the ``date`` header (the clock);
- ``etag`` and ``last-modified`` of the explorer's static files (the files' mtimes, which a
  checkout sets);
- ``pid`` in ``/health/live`` and ``/models``' ``worker`` (the process; and so the
  content-length of those answers);
- ``loaded_at`` in ``/models`` and ``/models/{name}`` (when the app started; same length);
- generated prediction ids (UUIDv7: the clock and random bits) become the nil-like UUID
  ``00000000-0000-7000-8000-000000000000`` of the same length; ids the client gave (its own,
  or from ``X-Request-ID``) are kept;
- ``/metrics``: its body counts the requests sent before it in this process, so only its
  status, content type and the sorted set of metric names are kept (without the
  ``*_created`` families, which appear once a labelled series has been observed).
Text bodies are kept as text; PNG bodies as sha256 and size (matplotlib's Agg output with
the service's figures is byte-stable: ``test_golden`` checks it against the record).
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .corpus import SHIPPED, Request, build

HERE = Path(__file__).resolve().parent
ANSWERS = HERE / "answers.jsonl"
VARYING_HEADERS = {"date", "etag", "last-modified"}
PID = re.compile(rb'"pid":\d+')
LOADED_AT = re.compile(rb'"loaded_at":"[^"]*"')
UUID7 = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
GENERATED_ID = b"00000000-0000-7000-8000-000000000000"


@contextmanager
def client() -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings

    with TestClient(create_app(Settings(model_dir=SHIPPED))) as test_client:
        yield test_client


def send(test_client: Any, request: Request) -> Any:
    return test_client.request(
        request.method,
        request.path,
        content=request.body or None,
        headers=dict(request.headers),
        follow_redirects=request.follow_redirects,
    )


def normalise(request: Request, response: Any) -> dict[str, Any]:
    """The answer as recorded: status, headers (but the varying ones), body."""
    headers = {
        key: value for key, value in sorted(response.headers.items()) if key not in VARYING_HEADERS
    }
    content: bytes = response.content
    answer: dict[str, Any] = {"name": request.name, "status": response.status_code}
    if request.path == "/metrics":
        found = set(re.findall(rb"^# TYPE (\S+)", content, flags=re.M))
        names = sorted(n for n in found if not n.endswith(b"_created"))
        headers.pop("content-length", None)
        answer |= {"headers": headers, "metric_names": [n.decode() for n in names]}
        return answer
    content, pids = PID.subn(b'"pid":"<pid>"', content)
    if pids:
        headers.pop("content-length", None)
    content = LOADED_AT.sub(b'"loaded_at":"<loaded_at>"', content)
    content = UUID7.sub(GENERATED_ID, content)
    answer["headers"] = headers
    if headers.get("content-type", "").startswith("image/"):
        answer["body_sha256"] = hashlib.sha256(content).hexdigest()
        answer["body_size"] = len(content)
    else:
        answer["body"] = content.decode("utf-8")
    return answer


def record_all() -> list[dict[str, Any]]:
    with client() as test_client:
        return [normalise(request, send(test_client, request)) for request in build()]


def main() -> int:
    answers = record_all()
    with ANSWERS.open("w", encoding="utf-8") as out:
        for answer in answers:
            out.write(json.dumps(answer, ensure_ascii=False, sort_keys=True) + "\n")
    print(f"{len(answers)} answers -> {ANSWERS.relative_to(Path.cwd())}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
