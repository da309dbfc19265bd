"""Atomic file writes: a reader never sees a half-written output."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO


def write_atomic(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write `path` through `write(file)` into a temporary sibling, then rename it into place."""
    with _sibling(path, f".{path.name}.", ".part") as (fd, _), os.fdopen(fd, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())


@contextlib.contextmanager
def staged_file(path: Path) -> Iterator[Path]:
    """A temporary sibling path (same suffix) to write, renamed onto `path` when the block
    succeeds and removed when it fails: for writers that want a file name (OpenCV's)."""
    with _sibling(path, f".{path.stem}.", f".part{path.suffix}") as (fd, tmp):
        os.close(fd)
        yield tmp


@contextlib.contextmanager
def _sibling(path: Path, prefix: str, suffix: str) -> Iterator[tuple[int, Path]]:
    """A new temporary file beside `path` (its descriptor, open, and its path), renamed onto
    `path` with the mode a new file gets when the block succeeds, removed when it fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
    try:
        yield fd, Path(tmp)
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def staged_folder(target: Path) -> Iterator[Path]:
    """A sibling path to fill (not created) that replaces `target` when the block succeeds;
    it is removed when the block fails, so `target` is never seen half written."""
    staging = target.parent / f".{target.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        yield staging
        for written in staging.iterdir():
            if written.is_file():
                written.chmod(file_mode())
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def file_mode() -> int:
    """The mode a new file gets under the current umask (mkstemp would give 0600)."""
    current = os.umask(0)
    os.umask(current)
    return 0o666 & ~current


def write_bytes_atomic(path: Path, data: bytes | memoryview) -> None:
    """Atomically replace `path` with `data`."""

    def write(handle: IO[bytes]) -> None:
        handle.write(data)

    write_atomic(path, write)


def write_text_atomic(path: Path, text: str) -> None:
    """Atomically replace `path` with UTF-8 `text`."""
    write_bytes_atomic(path, text.encode("utf-8"))


def sha256(path: Path) -> str:
    """The file's SHA-256 as 'sha256:<hex>'."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()
