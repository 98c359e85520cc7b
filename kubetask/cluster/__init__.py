"""A local real Kubernetes control plane with kwok GPU nodes (``kubetask cluster``)."""

from kubetask.cluster.kwok import DEV_NODES, NodeShape, parse_node_shapes
from kubetask.cluster.launcher import ClusterError, LocalCluster
from kubetask.cluster.provision import Binaries, ProvisionError, cached_binaries, provision

__all__ = ["DEV_NODES", "Binaries", "ClusterError", "LocalCluster", "NodeShape", "ProvisionError",
           "cached_binaries", "parse_node_shapes", "provision"]
