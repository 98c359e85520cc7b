"""Resource keys ``(group, plural)`` the simulated apiserver and its controllers refer to by name."""

from __future__ import annotations

from kubetask.sim.store import Key

K_CRD: Key = ("apiextensions.k8s.io", "customresourcedefinitions")
K_EVENTS: Key = ("", "events")
K_JOBS: Key = ("batch", "jobs")
K_LR: Key = ("", "limitranges")
K_MWC: Key = ("admissionregistration.k8s.io", "mutatingwebhookconfigurations")
K_NODES: Key = ("", "nodes")
K_NS: Key = ("", "namespaces")
K_PODS: Key = ("", "pods")
K_RQ: Key = ("", "resourcequotas")
K_SA: Key = ("", "serviceaccounts")
K_VWC: Key = ("admissionregistration.k8s.io", "validatingwebhookconfigurations")
