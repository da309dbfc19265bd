"""The cancellation state of one request: checked by the work between images and at every
batch of masked forwards, so that nothing is computed for an answer nobody reads."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Cancelled(Exception):
    """Raised inside the work when its ticket was cancelled or timed out."""


class Ticket:
    """The cancellation state of one request, shared by the handler and its worker thread.

    Args:
        timeout: seconds from now until the request is abandoned; None for no limit.
        on_forwards: called with the number of masked forwards each batch ran.
    """

    def __init__(
        self, timeout: float | None, on_forwards: Callable[[int], None] | None = None
    ) -> None:
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self._cancelled = threading.Event()
        self._on_forwards = on_forwards
        self._done = 0
        self.forwards = 0
        self.started = False

    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def remaining(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def check(self) -> None:
        """Raise `Cancelled` when the work should stop."""
        if self.cancelled or (self.deadline is not None and time.monotonic() >= self.deadline):
            raise Cancelled

    def count(self, forwards: int) -> None:
        """Record model forwards run for this request."""
        self.forwards += forwards
        if self._on_forwards is not None:
            self._on_forwards(forwards)

    def progress(self, done: int, total: int) -> None:
        """The engine's progress callback: count forwards, then stop here if asked to."""
        if done > self._done:
            self.count(done - self._done)
        self._done = done if done < total else 0
        self.check()
