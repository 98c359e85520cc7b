"""kubetask.sim — an in-process Kubernetes API server (real HTTP) with simulated nodes.

See :class:`SimCluster` for the public facade.
"""

from kubetask.sim.cluster import SimCluster, SimNode

__all__ = ["SimCluster", "SimNode"]
