"""Each search's trial fn has a name of its own: Tune registers trainables by name per Ray job, and two searches
side by side in one job (a suite's tasks) under one name ran each other's closure and logged as each other."""

from __future__ import annotations

from pipeline.records import SearchRef
from pipeline.tune.driver import make_driver


def _ref(search_id: str) -> SearchRef:
    return SearchRef(search_id=search_id, uri="sqlite:///x.db", exp_id="1", parent="p", metric="val_loss", mode="min",
                     max_reports=2)


def test_two_searches_get_two_names_and_a_resume_gets_the_same():
    from ray.tune.experiment import Experiment

    sst2, rte = make_driver({}, _ref("suite-1-sst2")), make_driver({}, _ref("suite-1-rte"))
    names = [Experiment.get_trainable_name(f) for f in (sst2, rte, make_driver({}, _ref("suite-1-sst2")))]
    assert names[0] != names[1] and names[0] == names[2], names
    assert all(n.startswith("driver_") for n in names)
