"""Prediction ids: the client's own, a request id suffixed by the instance's index, or a
generated time-ordered UUID (version 7)."""

from __future__ import annotations

import os
import re
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

from service.errors import InvalidInputError

# What an id may be: letters, digits and . _ : / + = @ ~ - (UUIDs, request ids, paths;
# nothing CSV or JSON would quote or escape), 1 to 200 characters (the log's column).
MAX_ID_LENGTH = 200
ID_CHARACTERS = r"[A-Za-z0-9._:/+=@~-]"
ID_PATTERN = rf"^{ID_CHARACTERS}{{1,200}}$"
_ID = re.compile(ID_PATTERN)
_lock = threading.Lock()
_last = [0, 0]  # the last (milliseconds, counter) handed out, for monotonic ids


def uuid7_strings(n: int) -> list[str]:
    """``n`` RFC 9562 version 7 UUIDs as text: 48 bits of Unix milliseconds, version 7, a
    12-bit counter (method 1 of section 6.2: the ids of one process sort in the order they
    were made, even within a millisecond; past 4096 in one millisecond the next one is
    borrowed), variant 10, 62 random bits. Made in bulk: one lock, one read of urandom."""
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last[0]:
            slot = _last[0] * 4096 + _last[1] + 1
        else:  # a fresh millisecond: the counter starts low and random, room to count up
            slot = ms * 4096 + (int.from_bytes(os.urandom(2), "big") & 0x3FF)
        _last[0], _last[1] = divmod(slot + n - 1, 4096)
    tails = os.urandom(8 * n).hex()
    out = []
    for i in range(n):
        at = slot + i
        head = f"{(at >> 12) << 16 | 0x7000 | (at & 0xFFF):016x}"
        # variant 10: the tail's first hex digit in 8..b
        tail = f"{8 | int(tails[16 * i], 16) & 3:x}{tails[16 * i + 1 : 16 * i + 16]}"
        out.append(f"{head[:8]}-{head[8:12]}-{head[12:]}-{tail[:4]}-{tail[4:]}")
    return out


def uuid7() -> uuid.UUID:
    """One version 7 UUID (:func:`uuid7_strings`)."""
    return uuid.UUID(uuid7_strings(1)[0])


def check_id(value: Any, field: str) -> str:
    """A client's id, or InvalidInputError naming ``field``."""
    if not isinstance(value, str) or not _ID.match(value):
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise InvalidInputError(
            f"{field}: {shown} is not an id (1 to {MAX_ID_LENGTH} letters, digits and "
            ". _ : / + = @ ~ -)"
        )
    return value


def instance_ids(
    n: int, ids: Sequence[Any] | None, request_id: str | None, field: str = "ids"
) -> list[str]:
    """The ``n`` instances' ids: the posted ``ids`` (one per instance, distinct), else
    ``request_id`` + ``-`` + the instance's index, else generated UUIDv7s."""
    if ids is not None:
        if len(ids) != n:
            raise InvalidInputError(f"{field}: has {len(ids)} ids but there are {n} instances")
        checked = [check_id(value, f"{field}[{i}]") for i, value in enumerate(ids)]
        if len(set(checked)) != n:
            seen: set[str] = set()
            for i, value in enumerate(checked):
                if value in seen:
                    raise InvalidInputError(f"{field}[{i}]: {value!r} appears twice")
                seen.add(value)
        return checked
    if request_id is not None:
        base = check_id(request_id.strip(), "request id header")
        if len(base) > MAX_ID_LENGTH - 8:
            raise InvalidInputError(
                f"request id header: longer than {MAX_ID_LENGTH - 8} characters"
            )
        return [f"{base}-{index}" for index in range(n)]
    return uuid7_strings(n)
