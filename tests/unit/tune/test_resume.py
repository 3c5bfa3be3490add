"""`--resume` with an id that holds no whole saved search, and an invalid search space, are one line before MLflow
or Ray is touched (the `home` fixture makes Ray unimportable and gives the run a store of its own)."""

from __future__ import annotations

import pytest

from pipeline.tune.resume import check_resumable
from tests.unit.test_preflight import fails, home  # noqa: F401  (home: the CLI fixture)


def _saved(root, search_id: str, state: str = "{}", tuner: bytes = b"x"):
    d = root / search_id
    d.mkdir(parents=True)
    (d / "experiment_state-2026-12-07_00-00-00.json").write_text(state)
    (d / "tuner.pkl").write_bytes(tuner)
    return d


def test_a_mistyped_id_lists_the_saved_searches(tmp_path):
    _saved(tmp_path, "sst2-20261207-010000")
    _saved(tmp_path, "sst2-20261207-020000")
    (tmp_path / "not-a-search").mkdir()
    with pytest.raises(ValueError, match=r"no saved search 'sst2-2026' under '.*'; expected one of: "
                                         r"sst2-20261207-0[12]0000, sst2-20261207-0[12]0000$"):
        check_resumable(str(tmp_path), "sst2-2026")
    with pytest.raises(ValueError, match=r"which holds none; expected the id a search printed first"):
        check_resumable(str(tmp_path / "empty"), "sst2-2026")
    with pytest.raises(ValueError, match=r"--resume='../up' is not a plain name"):
        check_resumable(str(tmp_path), "../up")
    check_resumable(str(tmp_path), "sst2-20261207-010000")  # a whole saved search passes
    check_resumable("s3://bucket/searches", "anything")  # a URI: Ray's restore reads it


@pytest.mark.parametrize("empty", ["state", "tuner", "params.json", "params.pkl"])
def test_a_state_truncated_by_a_full_disk_points_at_register(tmp_path, empty):
    """Tune's own state, or one trial's params (restored as a fresh trial with {} for its config otherwise)."""
    d = _saved(tmp_path, "s1", state="" if empty == "state" else "{}", tuner=b"" if empty == "tuner" else b"x")
    for trial in ("driver_a_00000_0", "driver_a_00001_1"):
        (d / trial).mkdir()
        (d / trial / "params.json").write_text("{}" if empty != "params.json" or trial.endswith("0") else "")
        (d / trial / "params.pkl").write_bytes(b"x" if empty != "params.pkl" or trial.endswith("0") else b"")
    with pytest.raises(ValueError, match=r"search 's1' cannot be resumed: (\S+) in .* is empty \(written while the "
                                         r"disk was full\?\); .*`promptfarm register CONFIG --search-id s1`") as e:
        check_resumable(str(tmp_path), "s1")
    if empty.startswith("params"):
        assert f"driver_a_00001_1/{empty} in" in str(e.value)


def _tiny(home, tiny_dirs):  # noqa: F811
    import yaml

    raw = yaml.safe_load((home / "exp.yaml").read_text())
    raw["backbone"]["name_or_path"] = str(tiny_dirs["llama"])
    (home / "exp.yaml").write_text(yaml.safe_dump(raw))
    return home / "exp.yaml"


def test_cli_resume_of_an_unknown_id_starts_nothing(home, tiny_dirs):  # noqa: F811
    exp = _tiny(home, tiny_dirs)
    fails(["search", str(exp), "--resume", "exp-typo"], "no saved search 'exp-typo' under")
    assert not (home / "mlflow.db").exists()


def test_cli_an_unknown_search_space_key_fails_before_ray(home, tiny_dirs):  # noqa: F811
    exp = _tiny(home, tiny_dirs)
    fails(["search", str(exp), "search.space={train.nosuch: {choice: [1, 2]}}"],
          "search space for method 'pt': unknown key 'train.nosuch'")
    assert not (home / "mlflow.db").exists()
