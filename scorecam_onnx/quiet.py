"""Keep native libraries (libpng, libjpeg, …) from writing to the user's terminal.

Image decoders inside OpenCV print their own complaints straight to file descriptor 2
("libpng error: IDAT: invalid window size"), bypassing Python. `native_stderr_silenced`
points descriptor 2 at the null device while such a call runs; our own messages, which
carry the reason anyway, are printed afterwards. Threads may decode at the same time: the
first one in redirects, the last one out restores.

Anything written to descriptor 2 by another thread during that short window is lost, so
long-running programs (the service) log through `stderr_stream()`, a duplicate of the
real stderr that the redirection does not touch.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from typing import TextIO

_lock = threading.Lock()
_depth = 0
_saved: int | None = None
_stream: TextIO | None = None


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Send what native code writes to descriptor 2 to the null device, for this block."""
    global _depth, _saved
    with _lock:
        if _depth == 0:
            with contextlib.suppress(ValueError, OSError):
                sys.stderr.flush()
            try:
                saved = os.dup(2)
            except OSError:  # no descriptor 2 at all: nothing to protect
                saved = None
            if saved is not None:
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, 2)
                os.close(null)
            _saved = saved
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved is not None:
                os.dup2(_saved, 2)
                os.close(_saved)
                _saved = None


def stderr_stream() -> TextIO:
    """A line-buffered text stream on the real stderr, unaffected by the silencing."""
    global _stream
    with _lock:
        if _stream is None:
            source = _saved if _saved is not None else 2
            _stream = os.fdopen(
                os.dup(source), "w", buffering=1, encoding="utf-8", errors="replace"
            )
        return _stream
