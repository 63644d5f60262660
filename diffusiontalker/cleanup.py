"""Bounded output folders: delete old entries by age, then the oldest ones until the folder fits a byte budget.

The app writes each request into its own sub-folder of one root; :func:`prune` keeps that root small however many
requests arrive, and never touches the folders of requests still running (``keep``)::

    report = prune(root, max_bytes=500 * 2**20, max_age_s=3600, keep=active_dirs)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PruneReport:
    """What one :func:`prune` call did.

    Attributes:
        removed: entries (files or folders directly under the root) deleted.
        freed: bytes those entries held.
        remaining: bytes left under the root afterwards.
        largest: bytes of the largest entry seen (kept or removed): an estimate of what the next request writes.
    """

    removed: int
    freed: int
    remaining: int
    largest: int


def disk_usage(path: str | os.PathLike) -> int:
    """Bytes held by the files under ``path`` (a file or a folder; links are not followed, missing paths are 0)."""
    path = Path(path)
    try:
        if path.is_symlink() or path.is_file():
            return path.lstat().st_size
    except OSError:
        return 0
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):  # removed meanwhile by another request
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def remove_if_empty(path: str | os.PathLike) -> bool:
    """Remove the folder ``path`` if it holds nothing; True when it was removed."""
    try:
        Path(path).rmdir()
    except OSError:  # not empty, or already gone
        return False
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def prune(root: str | os.PathLike, max_bytes: int | None = None, max_age_s: float | None = None,
          keep: Iterable[str | os.PathLike] = (), reserve: int = 0) -> PruneReport:
    """Bound the entries directly under ``root`` by age and total size.

    1. Entries not modified for more than ``max_age_s`` seconds are deleted.
    2. While the total exceeds ``max_bytes - reserve``, the least recently modified entry is deleted.
    Entries in ``keep`` (the folders of requests in flight) are never deleted, so the total can stay above the
    budget while they alone exceed it. ``reserve`` leaves room for what the caller is about to write, so that the
    total stays under ``max_bytes`` after it.

    Args:
        root: the folder to bound (missing: nothing to do).
        max_bytes: byte budget, or None for no size bound.
        max_age_s: age limit in seconds, or None for no age bound.
        keep: paths of entries never to delete.
        reserve: bytes to leave free under the budget.
    """
    root = Path(root)
    if not root.is_dir():
        return PruneReport(0, 0, 0, 0)
    protected = {Path(p).resolve() for p in keep}
    now = time.time()
    entries: list[tuple[float, int, Path]] = []  # (mtime, bytes, path)
    for entry in root.iterdir():
        try:
            mtime = entry.lstat().st_mtime
        except OSError:
            continue
        entries.append((mtime, disk_usage(entry), entry))
    largest = max((size for _, size, _ in entries), default=0)
    removed = freed = 0
    total = sum(size for _, size, _ in entries)
    survivors = []
    for mtime, size, entry in sorted(entries, key=lambda e: e[0]):  # oldest first
        if entry.resolve() in protected:
            survivors.append((mtime, size, entry))
            continue
        too_old = max_age_s is not None and now - mtime > max_age_s
        too_big = max_bytes is not None and total + reserve > max_bytes
        if too_old or too_big:
            _remove(entry)
            removed += 1
            freed += size
            total -= size
        else:
            survivors.append((mtime, size, entry))
    return PruneReport(removed=removed, freed=freed, remaining=total, largest=largest)
