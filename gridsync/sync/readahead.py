"""Read-ahead of pull pages: while a phone receives and applies page N, the server reads page N+1.

A paged pull is a conversation: the phone asks, the server reads a page, the phone reads it and
asks again. Done one after the other, a snapshot of 64 pages costs the sum of both sides' work
per page and every hand-off between them (bench/README.md section 2). After answering a page
that has more, the server starts reading the next one on a worker thread, under the cursor it
has just handed out; when the phone asks with that cursor, the page is already read (or being
read: the request waits for it instead of reading it twice).

Only the page itself is read ahead; everything else of the request is done for it as for any
other: the token is checked (a revoked device gets 401 whatever was read ahead), and a
read-ahead page is used only for the same device, cursor, page size and scope (grids, scope
version, and the phone numbers it reads in full) it was read for. A page read ahead is a page read a moment earlier from its own
consistent snapshot, which is what it would be had the phone asked sooner. Unclaimed pages are
dropped after ``TTL_MS`` or when ``SIZE`` others are newer.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

SIZE = 64  # pages kept at most (one per phone in a snapshot)
TTL_MS = 30_000

_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="gridsync-readahead")


class ReadAhead:
    """Pages being read, or read, ahead of the request that will ask for them."""

    def __init__(self, size: int = SIZE, ttl_ms: int = TTL_MS):
        self.size = size
        self.ttl_ms = ttl_ms
        self._pages: OrderedDict[Hashable, tuple[float, Future]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0  # pages served from the read-ahead (tests and benchmarks look)
        self.unstarted = 0  # pages asked for before their read-ahead had started: read on request

    def start(self, key: Hashable, fn: Callable[..., Any], *args: Any) -> None:
        """Read ``fn(*args)`` ahead for the request that will come with ``key``."""
        future = _pool.submit(fn, *args)
        now = time.monotonic()
        with self._lock:
            old = self._pages.pop(key, None)
            if old is not None:
                old[1].cancel()
            self._pages[key] = (now, future)
            while len(self._pages) > self.size:
                self._pages.popitem(last=False)[1][1].cancel()

    def take(self, key: Hashable) -> Future | None:
        """The page read ahead for ``key`` (done or still being read), or None: nothing was
        read ahead, it expired, or it had not started yet (then it is cancelled and the caller
        reads the page itself, sooner than waiting behind other phones' read-aheads)."""
        with self._lock:
            entry = self._pages.pop(key, None)
        if entry is None:
            return None
        started, future = entry
        if (time.monotonic() - started) * 1000 > self.ttl_ms:
            return None
        if future.cancel():
            self.unstarted += 1
            return None
        self.hits += 1
        return future
