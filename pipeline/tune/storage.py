"""The two stores a search writes failing mid-search: one line naming the store and what to do, not Ray's tracebacks.

- A full `storage_path`: Ray's syncer logs a traceback on every retry (every ~10 s), each trial that cannot persist
  its checkpoint fails with another, Tune's experiment state is written as zero bytes, and reading the truncated
  trial files back ends the driver with an EOFError (which the CLI printed as `Aborted.`). Measured on a 20 MB tmpfs
  filled after the first checkpoint: 480 lines of stderr, exit 1, no cause, no resume hint.
- A tracking store that cannot be written (the sqlite file made immutable after the first checkpoint): each trial
  fails on its next MLflow write and is retried, 423 lines of stderr and 7 tracebacks, exit 1.

`FaultGuard` wraps `Tuner.fit()` and the reading of its results: while it is active, Ray log records that carry
either fault are counted and not printed, and any failure of the search (or a trial error) once one was seen
becomes one `StorageFull` or `StoreUnwritable` (pipeline.tune.resume refuses to restore a truncated state).
"""

from __future__ import annotations

import errno
import logging
from pathlib import Path

FULL_TEXT = ("No space left on device", "[Errno 28]", "errno 28")
# sqlite's words for a store it cannot write (an immutable or read-only file, a vanished directory, a full disk)
STORE_TEXT = ("readonly database", "disk I/O error", "unable to open database file")


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


class StoreUnwritable(Exception):
    """The tracking store stopped accepting writes during the search (one line; the CLI adds the resume command)."""

    def __init__(self, uri: str, search_id: str, cause: str) -> None:
        from pipeline.preflight import redact_uri

        super().__init__(f"tracking store {redact_uri(uri)} could not be written during search {search_id!r} "
                         f"({cause}); make it writable again (file permissions, disk space, the server), then resume")
        self.uri, self.search_id = uri, search_id


FAULT_MARK = "promptfarm-store-fault"  # in the search's folder: its last run ended on an unwritable tracking store


def _fault_mark(storage_path: str, search_id: str) -> Path | None:
    """The mark's path in the search's folder; None for storage given as a URI (s3://, gs://), where `--resume`
    leaves failed trials failed, as after any other failure."""
    return None if "://" in storage_path else Path(storage_path) / search_id / FAULT_MARK


def mark_store_fault(storage_path: str, search_id: str) -> None:
    """Record in the search's folder that its trials failed on the tracking store, not on their own."""
    mark = _fault_mark(storage_path, search_id)
    if mark is not None and mark.parent.is_dir():
        mark.write_text("the tracking store refused writes; --resume retries the failed trials\n")


def took_store_fault(storage_path: str, search_id: str) -> bool:
    """Whether the search's last run ended on an unwritable store (the mark is consumed: one retry per fault)."""
    mark = _fault_mark(storage_path, search_id)
    if mark is None or not mark.is_file():
        return False
    mark.unlink()
    return True


def _chain(e: BaseException | None):
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def is_full(e: BaseException | str | None) -> bool:
    """Whether `e` (an exception, its causes and contexts, or a log message) is a full disk (ENOSPC)."""
    if isinstance(e, str):
        return any(t in e for t in FULL_TEXT)
    return any(isinstance(x, OSError) and x.errno == errno.ENOSPC or is_full(str(x)) for x in _chain(e))


def store_cause(e: BaseException | str | None) -> str | None:
    """The line of `e` (exception chain or log message) that says the tracking store refused a write, else None."""
    texts = [e] if isinstance(e, str) else [str(x) for x in _chain(e)]
    for text in texts:
        for line in text.splitlines():
            if any(t in line for t in STORE_TEXT):
                return line.strip()[:200]
    return None


class _Count(logging.Filter):
    """Drops (and remembers) Ray log records about either fault: the syncer's retries and the failed trials."""

    def __init__(self) -> None:
        super().__init__()
        self.full, self.store = 0, None

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += "\n" + str(record.exc_info[1])
        if is_full(text):
            self.full += 1
            return False
        cause = store_cause(text)
        if cause:
            self.store = self.store or cause
            return False
        return True


class FaultGuard:
    """`with FaultGuard(storage_path, tracking_uri, search_id) as guard: grid = tuner.fit(); guard.check(grid.errors)`:
    any failure (or trial error) once a store failed raises StorageFull or StoreUnwritable instead."""

    def __init__(self, storage_path: str, tracking_uri: str, search_id: str) -> None:
        self.storage_path, self.uri, self.search_id = storage_path, tracking_uri, search_id
        self._seen = _Count()
        self._handlers = logging.getLogger("ray").handlers  # Ray's own stderr handler: children propagate to it

    @property
    def full(self) -> bool:
        """Whether Ray logged a full-disk error while the guard was active."""
        return self._seen.full > 0

    def fault(self, errors: list[BaseException]) -> Exception | None:
        """The one-line fault behind the search's failure (`errors`: the ResultGrid's trial errors), else None."""
        if self.full or any(is_full(e) for e in errors):
            return StorageFull(self.storage_path, self.search_id)
        cause = self._seen.store or next((c for c in map(store_cause, errors) if c), None)
        return StoreUnwritable(self.uri, self.search_id, cause) if cause else None

    def check(self, errors: list[BaseException]) -> None:
        """Raise the fault, if the disk filled, the store failed, or a trial failed on either."""
        fault = self.fault(errors)
        if fault is not None:
            raise fault

    def __enter__(self) -> FaultGuard:
        for h in self._handlers:
            h.addFilter(self._seen)
        return self

    def __exit__(self, kind, value, tb) -> None:
        for h in self._handlers:
            h.removeFilter(self._seen)
        if isinstance(value, Exception) and not isinstance(value, StorageFull | StoreUnwritable):
            fault = self.fault([value])
            if fault is not None:
                raise fault from None
