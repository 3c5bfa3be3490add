"""A full storage_path or an unwritable tracking store: Ray's log records of the fault are counted, not printed, and
the search's failure becomes one StorageFull / StoreUnwritable line (the real runs: tests/e2e/test_store_faults.py)."""

from __future__ import annotations

import errno
import io
import logging

import pytest

from pipeline.tune.storage import FaultGuard, StorageFull, StoreUnwritable, is_full, store_cause


def test_is_full_follows_causes_and_reads_ray_messages():
    enospc = OSError(errno.ENOSPC, "No space left on device")
    try:
        try:
            raise enospc
        except OSError as inner:
            raise RuntimeError("trial failed") from inner
    except RuntimeError as outer:
        assert is_full(outer)
    assert is_full("OSError: [Errno 28] Error writing bytes to file. Detail: [errno 28] No space left on device")
    assert not is_full(OSError(errno.EACCES, "Permission denied")) and not is_full(ValueError("bad lr"))
    assert not is_full(None)


@pytest.fixture
def ray_log():
    """A handler on the 'ray' logger (where Ray's own stderr handler sits), capturing what would be printed."""
    stream, logger = io.StringIO(), logging.getLogger("ray")
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    yield stream
    logger.removeHandler(handler)


def test_full_disk_records_are_dropped_and_any_failure_becomes_one_line(ray_log):
    syncer = logging.getLogger("ray.train._internal.syncer")
    with pytest.raises(StorageFull) as e, FaultGuard("/data/ray", "sqlite:////data/mlflow.db", "s1") as guard:
        syncer.warning("Last sync command failed with the following error:\nTraceback ...\nOSError: [Errno 28] "
                       "No space left on device")
        syncer.warning("an unrelated warning")
        assert guard.full
        raise EOFError("Ran out of input")  # reading a zero-byte params.pkl back: the CLI printed `Aborted.`
    assert ray_log.getvalue() == "an unrelated warning\n"
    assert str(e.value).startswith("storage_path '/data/ray' is full (No space left on device while Ray saved the "
                                   "state and checkpoints of search 's1')") and "--search-id s1" in str(e.value)
    assert "\n" not in str(e.value)
    syncer.warning("after the search: No space left on device")  # the guard is gone: printed again
    assert "after the search" in ray_log.getvalue()


def test_trial_errors_on_the_full_disk_raise_and_other_failures_pass(ray_log):
    with FaultGuard("/data/ray", "sqlite:////data/mlflow.db", "s1") as guard:
        guard.check([ValueError("NaN loss")])  # a trial's own failure: the search reports it as usual
        with pytest.raises(StorageFull):
            guard.check([ValueError("NaN loss"), OSError(errno.ENOSPC, "No space left on device")])
    with pytest.raises(KeyError), FaultGuard("/data/ray", "sqlite:////data/mlflow.db", "s1"):
        raise KeyError("not a disk problem")


def test_a_store_that_refuses_writes_is_one_line_naming_it_and_sqlites_cause(ray_log):
    cause = "(sqlite3.OperationalError) attempt to write a readonly database"
    assert store_cause(RuntimeError(f"could not log\n{cause}\n[SQL: INSERT ...]")) == cause
    assert store_cause(ValueError("NaN loss")) is None
    tune = logging.getLogger("ray.tune.execution.tune_controller")
    with pytest.raises(StoreUnwritable) as e, FaultGuard("/data/ray", "sqlite:////data/mlflow.db", "s1"):
        tune.error(f"Trial task failed for trial driver_00000\nTraceback ...\nsqlalchemy.exc.OperationalError: {cause}")
        raise RuntimeError("the search run could not be closed")
    assert ray_log.getvalue() == ""
    assert str(e.value) == (f"tracking store sqlite:////data/mlflow.db could not be written during search 's1' "
                            f"(sqlalchemy.exc.OperationalError: {cause}); make it writable again (file "
                            "permissions, disk space, the server), then resume")
    with FaultGuard("/data/ray", "https://u:secret@mlflow.example/", "s1") as guard, \
            pytest.raises(StoreUnwritable) as e:
        guard.check([ValueError("NaN loss"), RuntimeError(f"log_batch failed: {cause}")])
    assert "secret" not in str(e.value)  # credentials in the URI are never printed


def test_the_store_fault_mark_is_taken_once_and_never_written_for_uri_storage(tmp_path):
    from pipeline.tune.storage import mark_store_fault, took_store_fault

    (tmp_path / "s1").mkdir()
    assert not took_store_fault(str(tmp_path), "s1")  # no fault recorded: failed trials stay failed
    mark_store_fault(str(tmp_path), "s1")
    assert took_store_fault(str(tmp_path), "s1") and not took_store_fault(str(tmp_path), "s1")
    mark_store_fault(str(tmp_path), "gone")  # a search folder that does not exist: nothing created
    assert not (tmp_path / "gone").exists()
    mark_store_fault("s3://bucket/searches", "s1")
    assert not took_store_fault("s3://bucket/searches", "s1")
