"""Validation of built-in kinds in the sim, checked against the real apiserver's rules.

Each invalid case is one a real Kubernetes 1.36 apiserver refuses; the sim must refuse it too,
with the same status (422 Invalid, or 400 for undecodable values) and the same field path.
The sim is driven in-process (no HTTP), so this whole module runs in well under a second.
"""

from __future__ import annotations

import asyncio
import base64
import copy
from typing import Any

import pytest

from kubetask.sim.api import Sim
from kubetask.sim.errors import ApiError

Obj = dict[str, Any]

KEYS = {
    "Pod": ("", "pods"), "Job": ("batch", "jobs"), "ConfigMap": ("", "configmaps"), "Secret": ("", "secrets"),
    "Namespace": ("", "namespaces"), "Service": ("", "services"), "ServiceAccount": ("", "serviceaccounts"),
    "Event": ("", "events"), "EventV1": ("events.k8s.io", "events"), "ResourceQuota": ("", "resourcequotas"),
    "LimitRange": ("", "limitranges"), "Lease": ("coordination.k8s.io", "leases"), "Node": ("", "nodes"),
    "Role": ("rbac.authorization.k8s.io", "roles"), "ClusterRole": ("rbac.authorization.k8s.io", "clusterroles"),
    "RoleBinding": ("rbac.authorization.k8s.io", "rolebindings"),
    "ClusterRoleBinding": ("rbac.authorization.k8s.io", "clusterrolebindings"),
    "VWC": ("admissionregistration.k8s.io", "validatingwebhookconfigurations"),
    "MWC": ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"),
    "CRD": ("apiextensions.k8s.io", "customresourcedefinitions"), "Deployment": ("apps", "deployments"),
}


def new_sim() -> Sim:
    sim = Sim()
    sim.seed(("", "namespaces"), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
    return sim


@pytest.fixture
def sim() -> Sim:
    return new_sim()


def create(sim: Sim, kind: str, body: Obj, ns: str = "default") -> Obj:
    rt = sim.rt_for(KEYS[kind])
    return copy.deepcopy(asyncio.run(sim.create(rt, ns if rt.namespaced else "", copy.deepcopy(body))))


def update(sim: Sim, kind: str, body: Obj, ns: str = "default", sub: str = "") -> Obj:
    rt = sim.rt_for(KEYS[kind])
    return copy.deepcopy(asyncio.run(sim.update(rt, ns if rt.namespaced else "", body["metadata"]["name"],
                                                copy.deepcopy(body), sub=sub)))


def rejected(sim: Sim, kind: str, body: Obj, ns: str = "default") -> ApiError:
    with pytest.raises(ApiError) as e:
        create(sim, kind, body, ns)
    return e.value


def fields(err: ApiError) -> list[str]:
    return [c["field"] for c in (err.details or {}).get("causes", [])]


# ----------------------------------------------------------------------------- builders

def container(**kw: Any) -> Obj:
    c: Obj = {"name": "main", "image": "busybox:1.36"}
    c.update(kw)
    return c


def pod(name: str = "p", containers: list[Obj] | None = None, **spec: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": containers or [container()], **spec}}


def job(name: str = "j", containers: list[Obj] | None = None, meta: Obj | None = None, tmeta: Obj | None = None,
        pod_spec: Obj | None = None, **spec: Any) -> Obj:
    ps: Obj = {"restartPolicy": "Never", "containers": containers or [container()]}
    ps.update(pod_spec or {})
    tmpl: Obj = {"spec": ps}
    if tmeta is not None:
        tmpl["metadata"] = tmeta
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, **(meta or {})},
            "spec": {"template": tmpl, **spec}}


def with_meta(kind: str, body: Obj, **meta: Any) -> Obj:
    body = copy.deepcopy(body)
    body["metadata"].update(meta)
    return body


CM: Obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"a": "1"}}
SECRET: Obj = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"a": "MQ=="}}
LONG = "a" * 64


def webhook(**kw: Any) -> Obj:
    wh: Obj = {"name": "check.kubetask.io", "sideEffects": "None", "admissionReviewVersions": ["v1"],
               "clientConfig": {"service": {"name": "svc", "namespace": "default", "path": "/validate"}},
               "rules": [{"operations": ["CREATE"], "apiGroups": ["kubetask.io"], "apiVersions": ["v1alpha1"],
                          "resources": ["tasks"]}]}
    wh.update(kw)
    return wh


def vwc(*hooks: Obj) -> Obj:
    return {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "kubetask"}, "webhooks": list(hooks)}


# ----------------------------------------------------------------------------- table

INVALID: list[tuple[str, str, Obj, str]] = [
    # ---- ObjectMeta (every kind)
    ("name: subdomain", "ConfigMap", with_meta("ConfigMap", CM, name="Bad_Name"), "metadata.name"),
    ("name: too long", "ConfigMap", with_meta("ConfigMap", CM, name="a" * 254), "metadata.name"),
    ("namespace name: DNS label", "Namespace", {"metadata": {"name": "a.b"}}, "metadata.name"),
    ("service name: DNS-1035", "Service", {"metadata": {"name": "1svc"}, "spec": {"ports": [{"port": 80}]}},
     "metadata.name"),
    ("generateName", "ConfigMap", {"metadata": {"generateName": "Bad-"}, "data": {}}, "metadata.generateName"),
    ("label key", "ConfigMap", with_meta("ConfigMap", CM, labels={"-bad": "x"}), "metadata.labels"),
    ("label key prefix", "ConfigMap", with_meta("ConfigMap", CM, labels={"Bad.io/x": "x"}), "metadata.labels"),
    ("label key name > 63", "ConfigMap", with_meta("ConfigMap", CM, labels={LONG: "x"}), "metadata.labels"),
    ("label value > 63", "ConfigMap", with_meta("ConfigMap", CM, labels={"a": LONG}), "metadata.labels"),
    ("label value chars", "ConfigMap", with_meta("ConfigMap", CM, labels={"a": "x y"}), "metadata.labels"),
    ("annotation key", "ConfigMap", with_meta("ConfigMap", CM, annotations={"a/b/c": "x"}), "metadata.annotations"),
    ("annotations > 256KiB", "ConfigMap", with_meta("ConfigMap", CM, annotations={"a": "x" * (256 * 1024)}),
     "metadata.annotations"),
    ("ownerRef uid", "ConfigMap", with_meta("ConfigMap", CM, ownerReferences=[
        {"apiVersion": "v1", "kind": "Pod", "name": "p"}]), "metadata.ownerReferences.uid"),
    ("ownerRef apiVersion", "ConfigMap", with_meta("ConfigMap", CM, ownerReferences=[
        {"apiVersion": "", "kind": "Pod", "name": "p", "uid": "1"}]), "metadata.ownerReferences.apiVersion"),
    ("two controllers", "ConfigMap", with_meta("ConfigMap", CM, ownerReferences=[
        {"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "1", "controller": True},
        {"apiVersion": "v1", "kind": "Pod", "name": "q", "uid": "2", "controller": True}]),
     "metadata.ownerReferences"),
    ("finalizer name", "ConfigMap", with_meta("ConfigMap", CM, finalizers=["bad finalizer"]), "metadata.finalizers"),
    # ---- Pod spec
    ("no containers", "Pod", {"metadata": {"name": "p"}, "spec": {"containers": []}}, "spec.containers"),
    ("container name", "Pod", pod(containers=[container(name="Bad_Name")]), "spec.containers[0].name"),
    ("duplicate container", "Pod", pod(containers=[container(), container()]), "spec.containers[1].name"),
    ("init/main duplicate", "Pod", pod(initContainers=[container()]), "spec.initContainers[0].name"),
    ("image required", "Pod", pod(containers=[{"name": "c"}]), "spec.containers[0].image"),
    ("image whitespace", "Pod", pod(containers=[container(image=" busybox")]), "spec.containers[0].image"),
    ("pull policy", "Pod", pod(containers=[container(imagePullPolicy="Sometimes")]),
     "spec.containers[0].imagePullPolicy"),
    ("termination message policy", "Pod", pod(containers=[container(terminationMessagePolicy="Logs")]),
     "spec.containers[0].terminationMessagePolicy"),
    ("port 0", "Pod", pod(containers=[container(ports=[{"containerPort": 0}])]),
     "spec.containers[0].ports[0].containerPort"),
    ("port range", "Pod", pod(containers=[container(ports=[{"containerPort": 70000}])]),
     "spec.containers[0].ports[0].containerPort"),
    ("port name", "Pod", pod(containers=[container(ports=[{"containerPort": 80, "name": "HTTP"}])]),
     "spec.containers[0].ports[0].name"),
    ("port protocol", "Pod", pod(containers=[container(ports=[{"containerPort": 80, "protocol": "HTTP"}])]),
     "spec.containers[0].ports[0].protocol"),
    ("env name '='", "Pod", pod(containers=[container(env=[{"name": "A=B", "value": "x"}])]),
     "spec.containers[0].env[0].name"),
    ("env name empty", "Pod", pod(containers=[container(env=[{"name": "", "value": "x"}])]),
     "spec.containers[0].env[0].name"),
    ("valueFrom empty", "Pod", pod(containers=[container(env=[{"name": "A", "valueFrom": {}}])]),
     "spec.containers[0].env[0].valueFrom"),
    ("valueFrom two sources", "Pod", pod(containers=[container(env=[{"name": "A", "valueFrom": {
        "fieldRef": {"fieldPath": "metadata.name"}, "secretKeyRef": {"name": "s", "key": "k"}}}])]),
     "spec.containers[0].env[0].valueFrom"),
    ("valueFrom + value", "Pod", pod(containers=[container(env=[{"name": "A", "value": "v", "valueFrom": {
        "fieldRef": {"fieldPath": "metadata.name"}}}])]), "spec.containers[0].env[0].valueFrom"),
    ("fieldRef path", "Pod", pod(containers=[container(env=[{"name": "A", "valueFrom": {
        "fieldRef": {"fieldPath": "spec.bogus"}}}])]), "spec.containers[0].env[0].valueFrom.fieldRef.fieldPath"),
    ("secretKeyRef key", "Pod", pod(containers=[container(env=[{"name": "A", "valueFrom": {
        "secretKeyRef": {"name": "s", "key": "a b"}}}])]), "spec.containers[0].env[0].valueFrom.secretKeyRef.key"),
    ("envFrom no source", "Pod", pod(containers=[container(envFrom=[{"prefix": "X_"}])]),
     "spec.containers[0].envFrom[0]"),
    ("volume source missing", "Pod", pod(volumes=[{"name": "v"}]), "spec.volumes[0]"),
    ("volume two sources", "Pod", pod(volumes=[{"name": "v", "emptyDir": {}, "configMap": {"name": "c"}}]),
     "spec.volumes[0].configMap"),
    ("volume name", "Pod", pod(volumes=[{"name": "V", "emptyDir": {}}]), "spec.volumes[0].name"),
    ("volume duplicate", "Pod", pod(volumes=[{"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}}]),
     "spec.volumes[1].name"),
    ("configMap volume name", "Pod", pod(volumes=[{"name": "v", "configMap": {}}]), "spec.volumes[0].configMap.name"),
    ("defaultMode", "Pod", pod(volumes=[{"name": "v", "secret": {"secretName": "s", "defaultMode": 1000}}]),
     "spec.volumes[0].secret.defaultMode"),
    ("mount unknown volume", "Pod", pod(containers=[container(volumeMounts=[{"name": "nope", "mountPath": "/x"}])]),
     "spec.containers[0].volumeMounts[0].name"),
    ("mountPath required", "Pod", pod(containers=[container(volumeMounts=[{"name": "v"}])],
                                      volumes=[{"name": "v", "emptyDir": {}}]),
     "spec.containers[0].volumeMounts[0].mountPath"),
    ("requests > limits", "Pod", pod(containers=[container(resources={"requests": {"cpu": "2"},
                                                                      "limits": {"cpu": "1"}})]),
     "spec.containers[0].resources.requests"),
    ("negative quantity", "Pod", pod(containers=[container(resources={"requests": {"memory": "-1Gi"}})]),
     "spec.containers[0].resources.requests[memory]"),
    ("gpu fractional", "Pod", pod(containers=[container(resources={"limits": {"nvidia.com/gpu": "500m"}})]),
     "spec.containers[0].resources.limits[nvidia.com/gpu]"),
    ("gpu request != limit", "Pod", pod(containers=[container(resources={
        "requests": {"nvidia.com/gpu": "1"}, "limits": {"nvidia.com/gpu": "2"}})]),
     "spec.containers[0].resources.requests"),
    ("gpu request without limit", "Pod", pod(containers=[container(resources={"requests": {"nvidia.com/gpu": "1"}})]),
     "spec.containers[0].resources.limits"),
    ("unknown bare resource", "Pod", pod(containers=[container(resources={"limits": {"gpu": "1"}})]),
     "spec.containers[0].resources.limits[gpu]"),
    ("restartPolicy", "Pod", pod(restartPolicy="Sometimes"), "spec.restartPolicy"),
    ("dnsPolicy", "Pod", pod(dnsPolicy="Google"), "spec.dnsPolicy"),
    ("dnsPolicy None needs dnsConfig", "Pod", pod(dnsPolicy="None"), "spec.dnsConfig"),
    ("activeDeadlineSeconds 0", "Pod", pod(activeDeadlineSeconds=0), "spec.activeDeadlineSeconds"),
    ("serviceAccountName", "Job", job(pod_spec={"serviceAccountName": "Bad_SA"}),
     "spec.template.spec.serviceAccountName"),
    ("nodeSelector value", "Pod", pod(nodeSelector={"gpu": "yes please"}), "spec.nodeSelector"),
    ("toleration Exists with value", "Pod", pod(tolerations=[{"key": "k", "operator": "Exists", "value": "v"}]),
     "spec.tolerations[0].operator"),
    ("toleration effect", "Pod", pod(tolerations=[{"key": "k", "operator": "Exists", "effect": "Never"}]),
     "spec.tolerations[0].effect"),
    ("tolerationSeconds without NoExecute", "Pod", pod(tolerations=[
        {"key": "k", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 5}]),
     "spec.tolerations[0].effect"),
    ("empty key needs Exists", "Pod", pod(tolerations=[{"operator": "Equal", "value": "v"}]),
     "spec.tolerations[0].operator"),
    ("toleration operator", "Pod", pod(tolerations=[{"key": "k", "operator": "Gte"}]),
     "spec.tolerations[0].operator"),
    ("affinity no terms", "Pod", pod(affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": []}}}),
     "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"),
    ("affinity In without values", "Pod", pod(affinity={"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "k", "operator": "In"}]}]}}}),
     "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]"
     ".matchExpressions[0].values"),
    ("preferred weight", "Pod", pod(affinity={"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 0, "preference": {"matchExpressions": [{"key": "k", "operator": "Exists"}]}}]}}),
     "spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight"),
    ("pod anti-affinity topologyKey", "Pod", pod(affinity={"podAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {"matchLabels": {"a": "b"}}}]}}),
     "spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey"),
    ("runAsUser", "Pod", pod(securityContext={"runAsUser": -1}), "spec.securityContext.runAsUser"),
    ("privileged without escalation", "Pod", pod(containers=[container(securityContext={
        "privileged": True, "allowPrivilegeEscalation": False})]), "spec.containers[0].securityContext"),
    # ---- Job
    ("job restartPolicy Always", "Job", job(pod_spec={"restartPolicy": "Always"}), "spec.template.spec.restartPolicy"),
    ("job restartPolicy default", "Job", {"metadata": {"name": "j"}, "spec": {"template": {"spec": {
        "containers": [container()]}}}}, "spec.template.spec.restartPolicy"),
    ("job name > 63 (job-name label)", "Job", job(name="j" * 64), "spec.template.labels"),
    ("job container name", "Job", job(containers=[container(name="Bad_Name")]),
     "spec.template.spec.containers[0].name"),
    ("job parallelism", "Job", job(parallelism=-1), "spec.parallelism"),
    ("job completions", "Job", job(completions=-1), "spec.completions"),
    ("job backoffLimit", "Job", job(backoffLimit=-1), "spec.backoffLimit"),
    ("job activeDeadlineSeconds", "Job", job(activeDeadlineSeconds=-1), "spec.activeDeadlineSeconds"),
    ("job ttl", "Job", job(ttlSecondsAfterFinished=-5), "spec.ttlSecondsAfterFinished"),
    ("job completionMode", "Job", job(completionMode="Sometimes"), "spec.completionMode"),
    ("indexed without completions", "Job", job(completionMode="Indexed", parallelism=2), "spec.completions"),
    ("podReplacementPolicy", "Job", job(podReplacementPolicy="Never"), "spec.podReplacementPolicy"),
    ("selector without manualSelector", "Job", job(selector={"matchLabels": {"app": "x"}},
                                                    tmeta={"labels": {"app": "x"}}), "spec.selector"),
    ("conflicting job-name label", "Job", job(tmeta={"labels": {"job-name": "other"}}),
     "spec.template.metadata.labels[job-name]"),
    ("manual selector mismatch", "Job", job(manualSelector=True, selector={"matchLabels": {"app": "x"}},
                                            tmeta={"labels": {"app": "y"}}), "spec.template.metadata.labels"),
    ("manual selector missing", "Job", job(manualSelector=True, tmeta={"labels": {"app": "y"}}), "spec.selector"),
    ("podFailurePolicy needs Never", "Job", job(pod_spec={"restartPolicy": "OnFailure"}, podFailurePolicy={
        "rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [1]}}]}),
     "spec.template.spec.restartPolicy"),
    ("podFailurePolicy action", "Job", job(podFailurePolicy={"rules": [
        {"action": "Explode", "onExitCodes": {"operator": "In", "values": [1]}}]}),
     "spec.podFailurePolicy.rules[0].action"),
    ("podFailurePolicy exit code 0", "Job", job(podFailurePolicy={"rules": [
        {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [0]}}]}),
     "spec.podFailurePolicy.rules[0].onExitCodes.values[0]"),
    ("podFailurePolicy neither", "Job", job(podFailurePolicy={"rules": [{"action": "FailJob"}]}),
     "spec.podFailurePolicy.rules[0]"),
    ("job template label", "Job", job(tmeta={"labels": {"a": "x y"}}), "spec.template.labels"),
    ("deployment restartPolicy", "Deployment", {"metadata": {"name": "d"}, "spec": {
        "selector": {"matchLabels": {"app": "d"}}, "template": {"metadata": {"labels": {"app": "d"}},
                                                                "spec": {"restartPolicy": "Never",
                                                                         "containers": [container()]}}}},
     "spec.template.spec.restartPolicy"),
    ("deployment selector mismatch", "Deployment", {"metadata": {"name": "d"}, "spec": {
        "selector": {"matchLabels": {"app": "d"}}, "template": {"metadata": {"labels": {"app": "e"}},
                                                                "spec": {"containers": [container()]}}}},
     "spec.template.metadata.labels"),
    # ---- ConfigMap / Secret
    ("configmap key", "ConfigMap", {"metadata": {"name": "c"}, "data": {"a b": "1"}}, "data[a b]"),
    ("configmap key '..'", "ConfigMap", {"metadata": {"name": "c"}, "data": {"..": "1"}}, "data[..]"),
    ("configmap > 1MiB", "ConfigMap", {"metadata": {"name": "c"}, "data": {"a": "x" * (1024 * 1024 + 1)}}, ""),
    ("binaryData duplicates data", "ConfigMap", {"metadata": {"name": "c"}, "data": {"a": "1"},
                                                 "binaryData": {"a": "MQ=="}}, "binaryData[a]"),
    ("secret key", "Secret", {"metadata": {"name": "s"}, "data": {"a/b": "MQ=="}}, "data[a/b]"),
    ("sa token secret needs annotation", "Secret", {"metadata": {"name": "s"},
                                                    "type": "kubernetes.io/service-account-token"},
     "metadata.annotations[kubernetes.io/service-account.name]"),
    ("tls secret keys", "Secret", {"metadata": {"name": "s"}, "type": "kubernetes.io/tls", "data": {}},
     "data[tls.key]"),
    ("dockerconfigjson json", "Secret", {"metadata": {"name": "s"}, "type": "kubernetes.io/dockerconfigjson",
                                         "data": {".dockerconfigjson": base64.b64encode(b"{nope").decode()}},
     "data[.dockerconfigjson]"),
    # ---- Namespace / Service / Event
    ("namespace finalizer", "Namespace", {"metadata": {"name": "n"}, "spec": {"finalizers": ["bogus"]}},
     "spec.finalizers"),
    ("service ports required", "Service", {"metadata": {"name": "s"}, "spec": {}}, "spec.ports"),
    ("service port range", "Service", {"metadata": {"name": "s"}, "spec": {"ports": [{"port": 0}]}},
     "spec.ports[0].port"),
    ("service type", "Service", {"metadata": {"name": "s"}, "spec": {"type": "Magic", "ports": [{"port": 80}]}},
     "spec.type"),
    ("event namespace mismatch", "Event", {"metadata": {"name": "e"}, "reason": "R", "message": "m",
                                           "involvedObject": {"kind": "Pod", "name": "p", "namespace": "other"}},
     "involvedObject.namespace"),
    ("events.k8s.io required fields", "EventV1", {"metadata": {"name": "e"}, "type": "Normal",
                                                  "regarding": {"kind": "Pod", "name": "p", "namespace": "default"}},
     "eventTime"),
    ("events.k8s.io type", "EventV1", {"metadata": {"name": "e"}, "eventTime": "2024-01-01T00:00:00.000000Z",
                                       "type": "Bad", "reason": "R", "action": "A", "reportingController": "x.io/c",
                                       "reportingInstance": "i",
                                       "regarding": {"kind": "Pod", "name": "p", "namespace": "default"}}, "type"),
    # ---- ResourceQuota / LimitRange / Lease / Node
    ("quota resource name", "ResourceQuota", {"metadata": {"name": "q"}, "spec": {"hard": {"gpus": "1"}}},
     "spec.hard[gpus]"),
    ("quota non-standard resource", "ResourceQuota", {"metadata": {"name": "q"}, "spec": {"hard": {"storage": "1"}}},
     "spec.hard[storage]"),
    ("quota negative", "ResourceQuota", {"metadata": {"name": "q"}, "spec": {"hard": {"pods": "-1"}}},
     "spec.hard[pods]"),
    ("quota integer", "ResourceQuota", {"metadata": {"name": "q"}, "spec": {"hard": {"pods": "1.5"}}},
     "spec.hard[pods]"),
    ("quota scope", "ResourceQuota", {"metadata": {"name": "q"}, "spec": {"hard": {"pods": "1"},
                                                                         "scopes": ["Sometimes"]}},
     "spec.scopes[0]"),
    ("limitrange type", "LimitRange", {"metadata": {"name": "l"}, "spec": {"limits": [{"type": "Node"}]}},
     "spec.limits[0].type"),
    ("limitrange min > max", "LimitRange", {"metadata": {"name": "l"}, "spec": {"limits": [
        {"type": "Container", "min": {"cpu": "2"}, "max": {"cpu": "1"}}]}}, "spec.limits[0].min[cpu]"),
    ("limitrange defaultRequest > default", "LimitRange", {"metadata": {"name": "l"}, "spec": {"limits": [
        {"type": "Container", "default": {"cpu": "1"}, "defaultRequest": {"cpu": "2"}}]}},
     "spec.limits[0].defaultRequest[cpu]"),
    ("limitrange default > max", "LimitRange", {"metadata": {"name": "l"}, "spec": {"limits": [
        {"type": "Container", "default": {"cpu": "2"}, "max": {"cpu": "1"}}]}}, "spec.limits[0].default[cpu]"),
    ("limitrange Pod default", "LimitRange", {"metadata": {"name": "l"}, "spec": {"limits": [
        {"type": "Pod", "default": {"cpu": "1"}}]}}, "spec.limits[0].default"),
    ("lease duration", "Lease", {"metadata": {"name": "l"}, "spec": {"leaseDurationSeconds": 0}},
     "spec.leaseDurationSeconds"),
    ("lease transitions", "Lease", {"metadata": {"name": "l"}, "spec": {"leaseTransitions": -1}},
     "spec.leaseTransitions"),
    ("node taint effect", "Node", {"metadata": {"name": "n"}, "spec": {"taints": [{"key": "k", "effect": "X"}]}},
     "spec.taints[0].effect"),
    ("node duplicate taint", "Node", {"metadata": {"name": "n"}, "spec": {"taints": [
        {"key": "k", "effect": "NoSchedule"}, {"key": "k", "value": "v", "effect": "NoSchedule"}]}},
     "spec.taints[1]"),
    # ---- RBAC
    ("role empty apiGroups", "Role", {"metadata": {"name": "r"}, "rules": [
        {"apiGroups": [], "resources": ["pods"], "verbs": ["get"]}]}, "rules[0].apiGroups"),
    ("role verbs", "Role", {"metadata": {"name": "r"}, "rules": [{"apiGroups": [""], "resources": ["pods"]}]},
     "rules[0].verbs"),
    ("role nonResourceURLs", "Role", {"metadata": {"name": "r"}, "rules": [
        {"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]}, "rules[0].nonResourceURLs"),
    ("binding subject kind", "RoleBinding", {"metadata": {"name": "b"}, "roleRef": {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
        "subjects": [{"kind": "Robot", "name": "x"}]}, "subjects[0].kind"),
    ("binding SA apiGroup", "RoleBinding", {"metadata": {"name": "b"}, "roleRef": {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
        "subjects": [{"kind": "ServiceAccount", "name": "x", "apiGroup": "rbac.authorization.k8s.io"}]},
     "subjects[0].apiGroup"),
    ("binding roleRef group", "RoleBinding", {"metadata": {"name": "b"}, "roleRef": {
        "apiGroup": "", "kind": "Role", "name": "r"}}, "roleRef.apiGroup"),
    ("crb SA namespace", "ClusterRoleBinding", {"metadata": {"name": "b"}, "roleRef": {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "r"},
        "subjects": [{"kind": "ServiceAccount", "name": "x"}]}, "subjects[0].namespace"),
    # ---- admission webhooks
    ("webhook name not qualified", "VWC", vwc(webhook(name="check")), "webhooks[0].name"),
    ("webhook names unique", "VWC", vwc(webhook(), webhook()), "webhooks[1].name"),
    ("sideEffects required", "VWC", vwc(webhook(sideEffects=None)), "webhooks[0].sideEffects"),
    ("sideEffects Some", "VWC", vwc(webhook(sideEffects="Some")), "webhooks[0].sideEffects"),
    ("admissionReviewVersions", "VWC", vwc(webhook(admissionReviewVersions=[])),
     "webhooks[0].admissionReviewVersions"),
    ("admissionReviewVersions unknown", "VWC", vwc(webhook(admissionReviewVersions=["v2"])),
     "webhooks[0].admissionReviewVersions"),
    ("clientConfig none", "VWC", vwc(webhook(clientConfig={})), "webhooks[0].clientConfig"),
    ("clientConfig both", "VWC", vwc(webhook(clientConfig={"url": "https://x.io", "service": {
        "name": "s", "namespace": "n"}})), "webhooks[0].clientConfig"),
    ("url http", "VWC", vwc(webhook(clientConfig={"url": "http://x.io/v"})), "webhooks[0].clientConfig.url"),
    ("url query", "VWC", vwc(webhook(clientConfig={"url": "https://x.io/v?a=1"})), "webhooks[0].clientConfig.url"),
    ("url user", "VWC", vwc(webhook(clientConfig={"url": "https://u:p@x.io/v"})), "webhooks[0].clientConfig.url"),
    ("url fragment", "VWC", vwc(webhook(clientConfig={"url": "https://x.io/v#f"})), "webhooks[0].clientConfig.url"),
    ("service path", "VWC", vwc(webhook(clientConfig={"service": {"name": "s", "namespace": "n", "path": "v"}})),
     "webhooks[0].clientConfig.service.path"),
    ("failurePolicy", "VWC", vwc(webhook(failurePolicy="Maybe")), "webhooks[0].failurePolicy"),
    ("matchPolicy", "VWC", vwc(webhook(matchPolicy="Fuzzy")), "webhooks[0].matchPolicy"),
    ("timeoutSeconds", "VWC", vwc(webhook(timeoutSeconds=31)), "webhooks[0].timeoutSeconds"),
    ("rule operation", "VWC", vwc(webhook(rules=[{"operations": ["PATCH"], "apiGroups": [""],
                                                  "apiVersions": ["v1"], "resources": ["pods"]}])),
     "webhooks[0].rules[0].operations[0]"),
    ("rule resources", "VWC", vwc(webhook(rules=[{"operations": ["CREATE"], "apiGroups": [""],
                                                  "apiVersions": ["v1"], "resources": []}])),
     "webhooks[0].rules[0].resources"),
    ("rule wildcard mix", "VWC", vwc(webhook(rules=[{"operations": ["*", "CREATE"], "apiGroups": [""],
                                                     "apiVersions": ["v1"], "resources": ["pods"]}])),
     "webhooks[0].rules[0].operations"),
    ("reinvocationPolicy", "MWC", {"metadata": {"name": "m"}, "webhooks": [webhook(reinvocationPolicy="Always")]},
     "webhooks[0].reinvocationPolicy"),
]


@pytest.mark.parametrize(("kind", "body", "field"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_objects_are_422_with_the_real_field_path(sim: Sim, kind: str, body: Obj, field: str) -> None:
    err = rejected(sim, kind, body)
    assert err.code == 422, err.message
    assert err.reason == "Invalid"
    assert field in fields(err), (field, err.message)


# ----------------------------------------------------------------------------- valid objects

VALID: list[tuple[str, str, Obj]] = [
    ("full pod", "Pod", pod(
        containers=[container(
            ports=[{"containerPort": 8080, "name": "http"}],
            env=[{"name": "A", "value": "1"}, {"name": "1_RELAXED.name-ok", "value": "x"},
                 {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                 {"name": "LBL", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                 {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                 {"name": "S", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k", "optional": True}}}],
            envFrom=[{"configMapRef": {"name": "c"}, "prefix": "C_"}],
            volumeMounts=[{"name": "v", "mountPath": "/data"}, {"name": "s", "mountPath": "scratch"}],
            resources={"requests": {"cpu": "500m", "memory": "1Gi", "nvidia.com/gpu": "1"},
                       "limits": {"cpu": "1", "memory": "2Gi", "nvidia.com/gpu": "1"}},
            securityContext={"runAsUser": 1000, "allowPrivilegeEscalation": False})],
        volumes=[{"name": "v", "configMap": {"name": "c", "items": [{"key": "a", "path": "a.txt"}]}},
                 {"name": "s", "emptyDir": {"sizeLimit": "1Gi"}}],
        nodeSelector={"nvidia.com/gpu.present": "true"},
        tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                     {"operator": "Exists"},
                     {"key": "k", "operator": "Equal", "value": "v", "effect": "NoExecute", "tolerationSeconds": 5}],
        affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "nvidia.com/gpu.present", "operator": "NotIn", "values": ["true"]}]}]}}},
        activeDeadlineSeconds=60, restartPolicy="Never", serviceAccountName="default",
        terminationGracePeriodSeconds=0)),
    ("gpu limits only", "Pod", pod(containers=[container(resources={"limits": {"nvidia.com/gpu": "2"}})])),
    ("job", "Job", job(backoffLimit=0, completions=1, parallelism=1, activeDeadlineSeconds=0,
                       ttlSecondsAfterFinished=0, suspend=True, tmeta={"labels": {"app": "x"}})),
    ("job with podFailurePolicy", "Job", job(podFailurePolicy={"rules": [
        {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [1, 42]}},
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]})),
    ("indexed job", "Job", job(completionMode="Indexed", completions=3, parallelism=3)),
    ("manual selector job", "Job", job(manualSelector=True, selector={"matchLabels": {"app": "x"}},
                                       tmeta={"labels": {"app": "x"}})),
    ("job name 63", "Job", job(name="j" * 63)),
    ("configmap", "ConfigMap", {"metadata": {"name": "c", "labels": {"kubetask.io/task": "t"},
                                             "annotations": {"Example.COM/Some_Key": "x"}},
                                "data": {"script.py": "print(1)", "KEY_NAME": "v"}, "binaryData": {"b": "MQ=="}}),
    ("secret stringData", "Secret", {"metadata": {"name": "s"}, "stringData": {"token": "abc"}}),
    ("sa token secret", "Secret", {"metadata": {"name": "s", "annotations": {
        "kubernetes.io/service-account.name": "default"}}, "type": "kubernetes.io/service-account-token"}),
    ("namespace", "Namespace", {"metadata": {"name": "kubetask-alice"}}),
    ("service account", "ServiceAccount", {"metadata": {"name": "kubetask-operator"}}),
    ("core event", "Event", {"metadata": {"name": "p.123"}, "reason": "Started", "type": "Normal",
                             "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"}}),
    ("events.k8s.io event", "EventV1", {"metadata": {"name": "p.123"}, "eventTime": "2024-01-01T00:00:00.000000Z",
                                        "type": "Warning", "reason": "Failed", "action": "Run",
                                        "reportingController": "kubetask.io/operator", "reportingInstance": "op-1",
                                        "regarding": {"kind": "Pod", "name": "p", "namespace": "default"}}),
    ("quota", "ResourceQuota", {"metadata": {"name": "q"}, "spec": {"hard": {
        "requests.nvidia.com/gpu": "4", "requests.cpu": "8", "requests.memory": "16Gi", "pods": "10",
        "count/jobs.batch": "1000"}}}),
    ("limitrange", "LimitRange", {"metadata": {"name": "l"}, "spec": {"limits": [
        {"type": "Container", "default": {"cpu": "1"}, "defaultRequest": {"cpu": "500m"}, "max": {"cpu": "2"},
         "min": {"cpu": "100m"}, "maxLimitRequestRatio": {"cpu": "4"}}]}}),
    ("lease", "Lease", {"metadata": {"name": "kubetask-operator"}, "spec": {
        "holderIdentity": "op-1", "leaseDurationSeconds": 15, "leaseTransitions": 0}}),
    ("role", "Role", {"metadata": {"name": "system:kubetask"}, "rules": [
        {"apiGroups": ["kubetask.io"], "resources": ["tasks"], "verbs": ["*"]}]}),
    ("binding", "RoleBinding", {"metadata": {"name": "b"}, "roleRef": {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
        "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "default"}]}),
    ("webhook config", "VWC", vwc(webhook(), webhook(name="other.kubetask.io",
                                                     clientConfig={"url": "https://127.0.0.1:9443/validate"}))),
]


@pytest.mark.parametrize(("kind", "body"), [c[1:] for c in VALID], ids=[c[0] for c in VALID])
def test_valid_objects_are_accepted(sim: Sim, kind: str, body: Obj) -> None:
    create(sim, kind, body)


# ----------------------------------------------------------------------------- messages and codes

def test_error_message_matches_the_real_format(sim: Sim) -> None:
    err = rejected(sim, "Job", job(name="x", containers=[container(name="Bad_Name")]))
    assert err.message == (
        'Job.batch "x" is invalid: spec.template.spec.containers[0].name: Invalid value: "Bad_Name": a lowercase '
        "RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an "
        "alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
        "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
    cause = err.details["causes"][0]  # type: ignore[index]
    assert cause["reason"] == "FieldValueInvalid"
    assert cause["field"] == "spec.template.spec.containers[0].name"


def test_unsupported_and_required_messages(sim: Sim) -> None:
    err = rejected(sim, "Pod", pod(restartPolicy="Sometimes"))
    assert 'spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"' \
        in err.message
    err = rejected(sim, "Job", job(pod_spec={"restartPolicy": "Always"}))
    assert 'spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"' in err.message


def test_invalid_quantity_is_a_400_decode_error(sim: Sim) -> None:
    err = rejected(sim, "Pod", pod(containers=[container(resources={"limits": {"cpu": "lots"}})]))
    assert err.code == 400
    assert err.message.startswith('Pod in version "v1" cannot be handled as a Pod: quantities must match')


def test_invalid_base64_secret_data_is_a_400(sim: Sim) -> None:
    err = rejected(sim, "Secret", {"metadata": {"name": "s"}, "data": {"a": "not base64!"}})
    assert err.code == 400
    assert "illegal base64 data" in err.message


def test_custom_resources_get_objectmeta_validation(sim: Sim) -> None:
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "widgets.test.io"},
           "spec": {"group": "test.io", "scope": "Namespaced",
                    "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
                    "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                        "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]}}
    create(sim, "CRD", crd)
    rt = sim.rt_for(("test.io", "widgets"))
    for meta, field in (({"name": "Bad"}, "metadata.name"),
                        ({"name": "w", "labels": {"a": "b c"}}, "metadata.labels"),
                        ({"name": "w", "annotations": {"a//b": "x"}}, "metadata.annotations"),
                        ({"name": "w", "finalizers": ["a b"]}, "metadata.finalizers")):
        with pytest.raises(ApiError) as e:
            asyncio.run(sim.create(rt, "default", {"apiVersion": "test.io/v1", "kind": "Widget", "metadata": meta}))
        assert e.value.code == 422 and field in fields(e.value)


def test_cluster_scoped_objects_drop_a_namespace(sim: Sim) -> None:
    ns = create(sim, "Namespace", {"metadata": {"name": "n1", "namespace": "default"}})
    assert "namespace" not in ns["metadata"]


# ----------------------------------------------------------------------------- updates

def test_pod_update_may_only_change_allowed_fields(sim: Sim) -> None:
    p = create(sim, "Pod", pod(activeDeadlineSeconds=100))
    changed = copy.deepcopy(p)
    changed["spec"]["containers"][0]["command"] = ["sh"]
    with pytest.raises(ApiError) as e:
        update(sim, "Pod", changed)
    assert e.value.code == 422 and "spec" in fields(e.value)
    p2 = copy.deepcopy(p)
    p2["spec"]["containers"][0]["image"] = "busybox:1.37"
    p2["spec"]["activeDeadlineSeconds"] = 50
    p2["spec"]["tolerations"].append({"key": "k", "operator": "Exists"})
    p2["metadata"]["labels"] = {"a": "b"}
    p2 = update(sim, "Pod", p2)
    up = copy.deepcopy(p2)
    up["spec"]["activeDeadlineSeconds"] = 500
    with pytest.raises(ApiError) as e:
        update(sim, "Pod", up)
    assert "spec.activeDeadlineSeconds" in fields(e.value)
    drop = copy.deepcopy(p2)
    drop["spec"]["tolerations"] = drop["spec"]["tolerations"][:1]
    with pytest.raises(ApiError) as e:
        update(sim, "Pod", drop)
    assert "spec.tolerations" in fields(e.value)


def test_job_template_is_immutable_but_suspended_jobs_may_change_scheduling(sim: Sim) -> None:
    j = create(sim, "Job", job(suspend=True))
    sched = copy.deepcopy(j)
    tspec = sched["spec"]["template"]["spec"]
    tspec["nodeSelector"] = {"nvidia.com/gpu.present": "true"}
    tspec["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    sched["spec"]["template"]["metadata"]["annotations"] = {"kueue": "x"}
    sched["spec"]["suspend"] = False  # unsuspend in the same update, as Kueue does
    j = update(sim, "Job", sched)
    again = copy.deepcopy(j)
    again["spec"]["template"]["spec"]["nodeSelector"] = {"other": "x"}
    with pytest.raises(ApiError) as e:
        update(sim, "Job", again)
    assert "spec.template" in fields(e.value)
    j2 = create(sim, "Job", job(name="j2", suspend=True))
    img = copy.deepcopy(j2)
    img["spec"]["template"]["spec"]["containers"][0]["image"] = "busybox:2"
    with pytest.raises(ApiError) as e:
        update(sim, "Job", img)
    assert "spec.template" in fields(e.value)


def test_job_immutable_fields(sim: Sim) -> None:
    j = create(sim, "Job", job())
    for f, v in (("completions", 2), ("completionMode", "Indexed")):
        bad = copy.deepcopy(j)
        bad["spec"][f] = v
        with pytest.raises(ApiError) as e:
            update(sim, "Job", bad)
        assert f"spec.{f}" in fields(e.value)
    bad = copy.deepcopy(j)
    bad["spec"]["selector"]["matchLabels"]["x"] = "y"
    with pytest.raises(ApiError) as e:
        update(sim, "Job", bad)
    assert "spec.selector" in fields(e.value)
    ok = copy.deepcopy(j)
    ok["spec"]["suspend"] = True
    ok["spec"]["activeDeadlineSeconds"] = 30
    update(sim, "Job", ok)


def test_status_updates_do_not_revalidate_the_spec(sim: Sim) -> None:
    j = create(sim, "Job", job())
    st = copy.deepcopy(j)
    st["status"] = {"active": 1}
    assert update(sim, "Job", st, sub="status")["status"] == {"active": 1}


def test_immutable_configmap_and_secret(sim: Sim) -> None:
    cm = create(sim, "ConfigMap", {**CM, "immutable": True})
    for change, field in (({"data": {"a": "2"}}, "data"), ({"immutable": False}, "immutable")):
        with pytest.raises(ApiError) as e:
            update(sim, "ConfigMap", {**cm, **change})
        assert field in fields(e.value)
    s = create(sim, "Secret", SECRET)
    with pytest.raises(ApiError) as e:
        update(sim, "Secret", {**s, "type": "kubernetes.io/basic-auth"})
    assert "type" in fields(e.value)


def test_rolebinding_roleref_is_immutable(sim: Sim) -> None:
    rb = create(sim, "RoleBinding", {"metadata": {"name": "b"}, "roleRef": {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"}})
    rb["roleRef"]["name"] = "other"
    with pytest.raises(ApiError) as e:
        update(sim, "RoleBinding", rb)
    assert "roleRef" in fields(e.value)


def test_webhook_side_effects_some_allowed_only_if_already_present(sim: Sim) -> None:
    cfg = create(sim, "VWC", vwc(webhook()))
    cfg["webhooks"][0]["sideEffects"] = "Some"
    with pytest.raises(ApiError) as e:
        update(sim, "VWC", cfg)
    assert "webhooks[0].sideEffects" in fields(e.value)


def test_events_k8s_io_fields_are_immutable(sim: Sim) -> None:
    ev = create(sim, "EventV1", {"metadata": {"name": "e"}, "eventTime": "2024-01-01T00:00:00.000000Z",
                                 "type": "Normal", "reason": "R", "action": "A",
                                 "reportingController": "kubetask.io/op", "reportingInstance": "i",
                                 "regarding": {"kind": "Pod", "name": "p", "namespace": "default"}})
    ev["reason"] = "Other"
    with pytest.raises(ApiError) as e:
        update(sim, "EventV1", ev)
    assert "reason" in fields(e.value)


# ----------------------------------------------------------------------------- server-populated defaults

def test_pod_and_job_defaults_match_a_real_apiserver(sim: Sim) -> None:
    p = create(sim, "Pod", pod(containers=[
        container(name="a", image="busybox"), container(name="b", image="busybox:latest"),
        container(name="c", image="busybox:1.36", env=[{"name": "N", "valueFrom": {
            "fieldRef": {"fieldPath": "metadata.name"}}}])], terminationGracePeriodSeconds=-5))
    spec = p["spec"]
    assert [c["imagePullPolicy"] for c in spec["containers"]] == ["Always", "Always", "IfNotPresent"]
    c = spec["containers"][2]
    assert c["terminationMessagePath"] == "/dev/termination-log"
    assert c["terminationMessagePolicy"] == "File"
    assert c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"] == "v1"
    assert spec["restartPolicy"] == "Always" and spec["dnsPolicy"] == "ClusterFirst"
    assert spec["schedulerName"] == "default-scheduler" and spec["securityContext"] == {}
    assert spec["terminationGracePeriodSeconds"] == 1
    j = create(sim, "Job", job(tmeta={"labels": {"app": "x"}}))
    js = j["spec"]
    uid = j["metadata"]["uid"]
    assert js["completionMode"] == "NonIndexed" and js["suspend"] is False
    assert js["podReplacementPolicy"] == "TerminatingOrFailed" and js["backoffLimit"] == 6
    assert js["completions"] == 1 and js["parallelism"] == 1 and "manualSelector" not in js
    assert js["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    assert js["template"]["metadata"]["labels"] == {
        "app": "x", "batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": "j",
        "controller-uid": uid, "job-name": "j"}
    j2 = create(sim, "Job", job(name="j2", podFailurePolicy={"rules": [
        {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [1]}}]}))
    assert j2["spec"]["podReplacementPolicy"] == "Failed"


def test_other_defaults(sim: Sim) -> None:
    s = create(sim, "Secret", {"metadata": {"name": "s"}, "stringData": {"k": "v"}, "data": {"a": "MQ=="}})
    assert "stringData" not in s and s["data"] == {"a": "MQ==", "k": "dg=="} and s["type"] == "Opaque"
    lr = create(sim, "LimitRange", {"metadata": {"name": "l"}, "spec": {"limits": [
        {"type": "Container", "max": {"nvidia.com/gpu": "2"}, "min": {"cpu": "100m"}}]}})
    item = lr["spec"]["limits"][0]
    assert item["default"] == {"nvidia.com/gpu": "2"}
    assert item["defaultRequest"] == {"nvidia.com/gpu": "2", "cpu": "100m"}
    rb = create(sim, "RoleBinding", {"metadata": {"name": "b"}, "roleRef": {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"}, "subjects": [
        {"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "sa"}]})
    assert rb["subjects"][0]["apiGroup"] == "rbac.authorization.k8s.io" and "apiGroup" not in rb["subjects"][1]
    cfg = create(sim, "VWC", vwc(webhook()))
    wh = cfg["webhooks"][0]
    assert (wh["failurePolicy"], wh["matchPolicy"], wh["timeoutSeconds"]) == ("Fail", "Equivalent", 10)
    assert wh["namespaceSelector"] == {} and wh["objectSelector"] == {}
    assert wh["rules"][0]["scope"] == "*" and wh["clientConfig"]["service"]["port"] == 443
    svc = create(sim, "Service", {"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}})
    assert svc["spec"]["ports"][0] == {"port": 80, "protocol": "TCP", "targetPort": 80}


def test_limit_range_defaults_apply_to_pods_without_that_resource(sim: Sim) -> None:
    """A LimitRange ``max`` becomes the default limit (and request) for containers that set none."""
    create(sim, "LimitRange", {"metadata": {"name": "l"}, "spec": {"limits": [
        {"type": "Container", "max": {"nvidia.com/gpu": "1"}}]}})
    p = create(sim, "Pod", pod())
    res = p["spec"]["containers"][0]["resources"]
    assert res == {"limits": {"nvidia.com/gpu": "1"}, "requests": {"nvidia.com/gpu": "1"}}
