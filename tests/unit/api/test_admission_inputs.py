"""The API's admission adapter: what it reads from the caches for the core's rules."""

from __future__ import annotations

from typing import Any

import pytest
from task_samples import TENANT, new_task, waiting

from kubetask.api.admission import admit


def test_admit_reads_siblings_only_for_dependencies() -> None:
    def siblings() -> list[dict[str, Any]]:
        raise AssertionError("the namespace was walked")

    admit(new_task(), TENANT, siblings, [], pending_count=lambda name: 1)
    with pytest.raises(Exception, match="Too many pending"):
        admit(new_task(), TENANT, siblings, [], pending_count=lambda name: 2)
    with pytest.raises(Exception, match="Dependency 'nope' does not exist"):
        admit(new_task(dependsOn=["nope"]), TENANT, lambda: [waiting("x")], [], pending_count=lambda name: 0)
    admit(new_task(dependsOn=["x"]), TENANT, lambda: [waiting("x")], [], pending_count=lambda name: 0)
    # A plain sequence (and no pending_count) still works as before.
    with pytest.raises(Exception, match="Too many pending"):
        admit(new_task(), TENANT, [waiting("x"), waiting("y")], [])
