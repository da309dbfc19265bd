"""Explanations off the event loop: a bounded pool of threads behind a bounded queue.

Each request gets a `Ticket`. The work checks it at every batch boundary (through the
engine's progress callback) and stops there once the client has gone or the request's
time is up, so no compute is spent on answers nobody reads.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from .errors import ApiError
from .ticket import Cancelled, Ticket

T = TypeVar("T")


class WorkPool:
    """Runs blocking work in `max_concurrency` threads; at most `max_queue` wait for one.

    Beyond that a request is refused at once with 503 and ``Retry-After``: memory never
    grows with the load. Counters are only touched on the event loop's thread.
    """

    def __init__(self, max_concurrency: int, max_queue: int, retry_after: int = 1) -> None:
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self.retry_after = retry_after
        self.executor = ThreadPoolExecutor(max_concurrency, thread_name_prefix="scorecam")
        self.admitted = 0
        self._running = 0
        self._lock = threading.Lock()

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return max(0, self.admitted - self._running)

    async def run(
        self,
        work: Callable[[Ticket], T],
        ticket: Ticket,
        disconnected: Callable[[], Any] | None = None,
    ) -> T:
        """Run `work(ticket)` in the pool and return its result.

        Args:
            work: blocking; should call `ticket.progress` or `ticket.check` now and then.
            ticket: its cancellation state.
            disconnected: an awaitable factory that returns once the client has gone.

        Raises:
            ApiError: 503 when the queue is full, 504 past the deadline, 499 when the
                client disconnected; the work is cancelled in the last two cases.
        """
        if self.admitted >= self.max_concurrency + self.max_queue:
            raise ApiError(
                503,
                f"the server is busy ({self.max_concurrency} running, "
                f"{self.max_queue} waiting); retry later",
                {"Retry-After": str(self.retry_after)},
            )
        self.admitted += 1
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self.executor, self._call, work, ticket)
        future.add_done_callback(self._release)
        watcher = asyncio.ensure_future(disconnected()) if disconnected is not None else None
        try:
            waiting = {future} if watcher is None else {future, watcher}
            done, _ = await asyncio.wait(
                waiting, timeout=ticket.remaining(), return_when=asyncio.FIRST_COMPLETED
            )
        except asyncio.CancelledError:  # the caller's task was cancelled (a gRPC cancel)
            ticket.cancel()
            if not ticket.started:
                future.cancel()
            raise
        finally:
            if watcher is not None:
                watcher.cancel()
        if future in done:
            try:
                return future.result()
            except Cancelled:
                raise ApiError(504, "the request timed out") from None
        ticket.cancel()
        if not ticket.started:
            # Still queued: drop it from the executor's queue, so that its slot frees now.
            future.cancel()
        if watcher is not None and watcher in done:
            raise ApiError(499, "the client closed the connection")
        raise ApiError(504, "the request timed out")

    def _call(self, work: Callable[[Ticket], T], ticket: Ticket) -> T:
        ticket.started = True
        ticket.check()  # gone or timed out while waiting: do nothing
        with self._lock:
            self._running += 1
        try:
            return work(ticket)
        finally:
            with self._lock:
                self._running -= 1

    def _release(self, _future: asyncio.Future) -> None:
        self.admitted -= 1
