"""A full `storage_path` during a search: one line naming it and what to do, instead of Ray's tracebacks.

When the disk under `storage_path` fills, Ray's syncer logs a traceback on every retry (every ~10 s), each trial
that cannot persist its checkpoint fails with another, Tune's experiment state is written as zero bytes, and reading
the truncated trial files back ends the driver with an EOFError (which the CLI printed as `Aborted.`). Measured on
a 20 MB tmpfs filled after the first checkpoint: 480 lines of stderr, exit 1, no cause, no resume hint.

`FullDiskGuard` wraps `Tuner.fit()` and the reading of its results: while it is active, Ray log records that carry
the full-disk error are counted and not printed, and any failure of the search once the disk is full becomes one
`StorageFull` (the path, what to do, and the way back: `--resume`, or `register --search-id` from MLflow when the
saved state was cut short; pipeline.tune.resume refuses to restore a truncated state).
"""

from __future__ import annotations

import errno
import logging

FULL_TEXT = ("No space left on device", "[Errno 28]", "errno 28")


class StorageFull(Exception):
    """The disk under a search's storage_path filled during the search (one line; the CLI adds the resume
    command)."""

    def __init__(self, storage_path: str, search_id: str) -> None:
        super().__init__(
            f"storage_path {storage_path!r} is full (No space left on device while Ray saved the state and "
            f"checkpoints of search {search_id!r}); free space there or set storage_path to a larger disk; its "
            f"trials' results and best prompts are in MLflow (`promptfarm register CONFIG --search-id {search_id}` "
            "registers the best)")
        self.storage_path, self.search_id = storage_path, search_id


def is_full(e: BaseException | str | None) -> bool:
    """Whether `e` (an exception, its causes and contexts, or a log message) is a full disk (ENOSPC)."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, str):
            return any(t in e for t in FULL_TEXT)
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno == errno.ENOSPC or any(t in str(e) for t in FULL_TEXT):
            return True
        e = e.__cause__ or e.__context__
    return False


class _CountFull(logging.Filter):
    """Drops (and counts) Ray log records about the full disk: the syncer's retries and the failed trials."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = 0

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += " " + str(record.exc_info[1])
        if is_full(text):
            self.seen += 1
            return False
        return True


class FullDiskGuard:
    """`with FullDiskGuard(storage_path, search_id) as guard: grid = tuner.fit(); guard.check(grid.errors)`: any
    failure (or a trial error) while the disk is full raises StorageFull instead."""

    def __init__(self, storage_path: str, search_id: str) -> None:
        self.storage_path, self.search_id = storage_path, search_id
        self._filter = _CountFull()
        self._handlers = logging.getLogger("ray").handlers  # Ray's own stderr handler: children propagate to it

    @property
    def full(self) -> bool:
        """Whether Ray logged a full-disk error while the guard was active."""
        return self._filter.seen > 0

    def check(self, errors: list[BaseException]) -> None:
        """Raise StorageFull if the disk filled or a trial failed on it (`errors`: the ResultGrid's errors)."""
        if self.full or any(is_full(e) for e in errors):
            raise StorageFull(self.storage_path, self.search_id)

    def __enter__(self) -> FullDiskGuard:
        for h in self._handlers:
            h.addFilter(self._filter)
        return self

    def __exit__(self, kind, value, tb) -> None:
        for h in self._handlers:
            h.removeFilter(self._filter)
        if value is not None and isinstance(value, Exception) and not isinstance(value, StorageFull) \
                and (self.full or is_full(value)):
            raise StorageFull(self.storage_path, self.search_id) from None
