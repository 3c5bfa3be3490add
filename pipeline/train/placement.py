"""Release a trial's worker placement group when Tune ends the trial.

When ASHA stops a trial (or it reaches max_t) Tune kills the trial's driver, and with it the Ray Train controller,
before the controller can remove its worker group's placement group. Ray Train's own PlacementGroupCleaner only
removes it if the State API (dashboard) answers; when it does not, the CPUs stay reserved and the next trial
waits for workers forever. So rank 0 records its placement group in Ray's internal KV under the trial's key, and
the Tune callback removes it when the trial ends. Removing an already removed group is a no-op.
"""

from __future__ import annotations

import contextlib

_PREFIX = "promptfarm:pg:"


def record_current(trial_key: str) -> None:
    """Called on a Train worker: remember the placement group this worker group runs in."""
    import ray
    from ray.experimental.internal_kv import _internal_kv_put

    pg = ray.util.get_current_placement_group()
    if pg is not None:
        _internal_kv_put(_PREFIX + trial_key, pg.id.hex(), overwrite=True)


def release(trial_key: str) -> bool:
    """Called in the Tune driver when a trial ends: remove its recorded placement group; True if one was removed."""
    from ray._raylet import PlacementGroupID
    from ray.experimental.internal_kv import _internal_kv_del, _internal_kv_get
    from ray.util import placement_group_table
    from ray.util.placement_group import PlacementGroup, remove_placement_group

    raw = _internal_kv_get(_PREFIX + trial_key)
    if not raw:
        return False
    _internal_kv_del(_PREFIX + trial_key)
    pg = PlacementGroup(PlacementGroupID(bytes.fromhex(raw.decode())))
    if placement_group_table(pg).get("state") in (None, "REMOVED"):
        return False
    with contextlib.suppress(Exception):  # removed concurrently by Ray Train itself
        remove_placement_group(pg)
        return True
    return False
