"""What `--resume SEARCH_ID` may restore, checked before MLflow or Ray is touched.

A mistyped id used to start Ray, print a 58-line traceback and leave a new RUNNING MLflow run; a search whose state
files were truncated by a full disk was restored as a fresh trial with `{}` for its hyperparameters. Both are one
line now: the searches that do exist, or the way back through MLflow (`promptfarm register --search-id`).
"""

from __future__ import annotations

from pathlib import Path

from pipeline.schema import check_plain_name

STATE_GLOB = "experiment_state-*.json"  # Ray Tune's experiment state, one per (re)start of the search
LISTED = 8  # searches named in the error, newest first


def check_resumable(storage_path: str, search_id: str) -> None:
    """ValueError unless `storage_path`/`search_id` holds a whole saved Tune experiment. Storage given as a URI
    (s3://, gs://) is left to Ray's own restore, which reads it."""
    check_plain_name(search_id, "--resume", "names a search folder under storage_path")
    if "://" in storage_path:
        return
    root = Path(storage_path).expanduser()
    path = root / search_id
    states = sorted(path.glob(STATE_GLOB)) if path.is_dir() else []
    if not states or not (path / "tuner.pkl").is_file():
        known = _searches(root)
        listed = ", ".join(known[:LISTED]) + (f" (and {len(known) - LISTED} more)" if len(known) > LISTED else "")
        raise ValueError(f"no saved search {search_id!r} under {str(root)!r}; expected one of: {listed}"
                         if known else f"no saved search {search_id!r} under {str(root)!r}, which holds none; "
                         "expected the id a search printed first ('search id: ...')")
    # A trial's params (its sampled config) written while the disk was full: Tune would restore it as a fresh
    # trial with {} for its hyperparameters, loading another shape's checkpoint, so refuse the whole state.
    params = [p for d in path.iterdir() if d.is_dir() for p in (d / "params.json", d / "params.pkl") if p.is_file()]
    empty = [p for p in (*states, path / "tuner.pkl", *params) if p.stat().st_size == 0]
    if empty:
        raise ValueError(f"search {search_id!r} cannot be resumed: {empty[0].relative_to(path)} in {str(path)!r} is "
                         "empty (written while the disk was full?); its trials' results are in MLflow: register the "
                         f"best with `promptfarm register CONFIG --search-id {search_id}`")


def _searches(root: Path) -> list[str]:
    """Ids of the saved searches under `root`, newest first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and (p / "tuner.pkl").is_file() and any(p.glob(STATE_GLOB))]
    return [p.name for p in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)]
