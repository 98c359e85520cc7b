"""The REST facade's pure core (DESIGN §4): framework-free, unit-tested; the API's routes are thin adapters.

* :mod:`~kubetask.core.rest.intake`: a request body in any compatible API's dialect -> a Task object;
* :mod:`~kubetask.core.rest.patches`: update, replay and limits patches;
* :mod:`~kubetask.core.rest.present`: Task, Tenant and TaskTemplate objects -> public JSON
  (:mod:`~kubetask.core.rest.shapes` holds the one public Task model);
* :mod:`~kubetask.core.rest.query`: filters, sort, paging, precomputed rows and list envelopes;
* :mod:`~kubetask.core.rest.workers`, :mod:`~kubetask.core.rest.insights`,
  :mod:`~kubetask.core.rest.alerts`: the Distributed Task Queue System API's workers, dashboard/analytics/search and
  alerts/resilience;
* :mod:`~kubetask.core.rest.errors`: :class:`RestError` and the mapping of admission verdicts.

Import from the submodules.  The names below are re-exported for code outside the API's routes
(benchmarks, the live-update routes) that imported them from the old single module.
"""

from kubetask.core.phases import TERMINAL_PHASES, task_phase
from kubetask.core.rest.errors import RestError, invalid
from kubetask.core.rest.intake import BuildContext, build_task, generate_task_id
from kubetask.core.rest.present import task_public
from kubetask.core.rest.query import TaskQuery, encode_json, make_query, task_matches

__all__ = [
    "TERMINAL_PHASES", "BuildContext", "RestError", "TaskQuery", "build_task", "encode_json", "generate_task_id",
    "invalid", "make_query", "task_matches", "task_phase", "task_public",
]
