"""Admission chain: built-in plugins (ServiceAccount, LimitRanger, DefaultTolerationSeconds,
NamespaceLifecycle is in the API core), admission webhooks and ResourceQuota.

Order as real: mutating plugins → mutating webhooks → (schema validation, in the core) →
validating webhooks → ResourceQuota (checked atomically at commit time).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import ssl
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import aiohttp
import jsonpatch
from kubernetes.utils.quantity import parse_quantity

from kubetask.sim.errors import ApiError, forbidden, internal
from kubetask.sim.keys import K_LR, K_MWC, K_NS, K_PODS, K_RQ, K_SA, K_VWC
from kubetask.sim.resources import ResourceType
from kubetask.sim.selectors import object_selector_matches

if TYPE_CHECKING:
    from kubetask.sim.api import Ctx, Sim

Obj = dict[str, Any]
TERMINAL = ("Succeeded", "Failed")


def q(v: Any) -> Decimal:
    return Decimal(parse_quantity(v))  # type: ignore[no-untyped-call]


def fmt_q(d: Decimal, resource: str) -> str:
    """Render a quantity canonically (cpu in m when fractional, memory in binary units)."""
    if d == d.to_integral_value():
        n = int(d)
        if resource.endswith("memory") or resource.endswith("storage"):
            for suf, mul in (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
                if n and n % mul == 0:
                    return f"{n // mul}{suf}"
        return str(n)
    m = d * 1000
    if m == m.to_integral_value():
        return f"{int(m)}m"
    return str(d)


# ============================================================== pod resources

def container_sum(pod: Obj, kind: str) -> dict[str, Decimal]:
    """Effective pod requests/limits: max(sum(containers), max(initContainers))."""
    spec = pod.get("spec") or {}
    total: dict[str, Decimal] = {}
    for c in spec.get("containers") or ():
        for r, v in ((c.get("resources") or {}).get(kind) or {}).items():
            total[r] = total.get(r, Decimal(0)) + q(v)
    for c in spec.get("initContainers") or ():
        for r, v in ((c.get("resources") or {}).get(kind) or {}).items():
            total[r] = max(total.get(r, Decimal(0)), q(v))
    return total


def pod_usage(pod: Obj) -> dict[str, Decimal]:
    """Quota usage of one pod (terminal pods count for nothing)."""
    if (pod.get("status") or {}).get("phase") in TERMINAL:
        return {}
    req = container_sum(pod, "requests")
    lim = container_sum(pod, "limits")
    out: dict[str, Decimal] = {"pods": Decimal(1), "count/pods": Decimal(1)}
    for r, v in req.items():
        out[f"requests.{r}"] = v
        if r in ("cpu", "memory", "ephemeral-storage"):
            out[r] = v
    for r, v in lim.items():
        if r in ("cpu", "memory", "ephemeral-storage"):
            out[f"limits.{r}"] = v
    return out


def object_usage(rt_key: tuple[str, str], obj: Obj) -> dict[str, Decimal]:
    group, plural = rt_key
    if rt_key == K_PODS:
        return pod_usage(obj)
    out = {f"count/{plural}.{group}" if group else f"count/{plural}": Decimal(1)}
    if not group and plural in ("configmaps", "secrets", "services", "resourcequotas",
                                "persistentvolumeclaims", "replicationcontrollers"):
        out[plural] = Decimal(1)
    return out


class Admission:
    """The sim's admission chain."""

    def __init__(self, sim: Sim) -> None:
        self.sim = sim
        self._session: aiohttp.ClientSession | None = None
        self._ssl_cache: dict[str, ssl.SSLContext] = {}

    # ================================================================ mutate
    async def mutate(self, rt: ResourceType, ns: str, op: str, obj: Obj, old: Obj | None, ctx: Ctx,
                     sub: str = "") -> Obj:
        if rt.key == K_PODS and op == "CREATE":
            obj = self._service_account(ns, obj)
            obj = self._default_tolerations(obj)
            obj = self._limit_ranger(ns, obj)
        mutated: Obj = await self._webhooks(K_MWC, rt, ns, op, obj, old, ctx, sub)
        return mutated

    async def validate(self, rt: ResourceType, ns: str, op: str, obj: Obj | None, old: Obj | None, ctx: Ctx,
                       sub: str = "") -> None:
        if rt.key == K_PODS and obj is not None and op in ("CREATE",):
            self._limit_ranger_validate(ns, obj)
        await self._webhooks(K_VWC, rt, ns, op, obj, old, ctx, sub)

    # ----------------------------------------------------------- plugins
    def _service_account(self, ns: str, pod: Obj) -> Obj:
        spec = pod.setdefault("spec", {})
        sa = spec.get("serviceAccountName") or "default"
        spec["serviceAccountName"] = sa
        spec.setdefault("serviceAccount", sa)
        if self.sim.store.get(K_SA, ns, sa) is None:
            raise forbidden("pods", "", pod["metadata"].get("name", ""),
                            f'error looking up service account {ns}/{sa}: serviceaccount "{sa}" not found')
        return pod

    def _default_tolerations(self, pod: Obj) -> Obj:
        tols = pod["spec"].setdefault("tolerations", [])
        for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
            if not any(t.get("key") == key and t.get("effect") in (None, "", "NoExecute") for t in tols):
                tols.append({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300})
        return pod

    def _limit_ranger(self, ns: str, pod: Obj) -> Obj:
        notes: list[str] = []
        for lr in self.sim.store.iter(K_LR, ns):
            for item in (lr.get("spec") or {}).get("limits") or ():
                if item.get("type") != "Container":
                    continue
                dlim = item.get("default") or {}
                dreq = item.get("defaultRequest") or {}
                for c in pod["spec"].get("containers") or ():
                    res = c.setdefault("resources", {})
                    set_req, set_lim = [], []
                    for r, v in dlim.items():
                        lim = res.setdefault("limits", {})
                        if r not in lim:
                            lim[r] = v
                            set_lim.append(r)
                    for r, v in {**dlim, **dreq}.items():
                        req = res.setdefault("requests", {})
                        if r not in req:
                            # Without defaultRequest, the request defaults to the (given or default) limit.
                            req[r] = dreq.get(r, (res.get("limits") or {}).get(r, v))
                            set_req.append(r)
                    if not res.get("limits"):
                        res.pop("limits", None)
                    if not res.get("requests"):
                        res.pop("requests", None)
                    if set_req:
                        notes.append(f"{', '.join(set_req)} request for container {c.get('name')}")
                    if set_lim:
                        notes.append(f"{', '.join(set_lim)} limit for container {c.get('name')}")
        if notes:
            ann = pod["metadata"].setdefault("annotations", {})
            ann["kubernetes.io/limit-ranger"] = "LimitRanger plugin set: " + "; ".join(notes)
        return pod

    def _limit_ranger_validate(self, ns: str, pod: Obj) -> None:
        errs: list[str] = []
        for lr in self.sim.store.iter(K_LR, ns):
            for item in (lr.get("spec") or {}).get("limits") or ():
                typ = item.get("type")
                if typ == "Container":
                    for c in pod["spec"].get("containers") or ():
                        res = c.get("resources") or {}
                        errs.extend(_minmax(item, res.get("requests") or {}, res.get("limits") or {}, "Container"))
                elif typ == "Pod":
                    req = {k: str(v) for k, v in container_sum(pod, "requests").items()}
                    lim = {k: str(v) for k, v in container_sum(pod, "limits").items()}
                    errs.extend(_minmax(item, req, lim, "Pod"))
        if errs:
            msg = errs[0] if len(errs) == 1 else "[" + ", ".join(errs) + "]"
            raise forbidden("pods", "", pod["metadata"].get("name", ""), msg)

    # ------------------------------------------------------------- quota
    def quota_check(self, rt: ResourceType, ns: str, op: str, obj: Obj, old: Obj | None, ctx: Ctx) -> None:
        """ResourceQuota admission; runs synchronously at commit time so it is race-free."""
        if not rt.namespaced or op != "CREATE":
            return
        quotas = list(self.sim.store.iter(K_RQ, ns))
        if not quotas:
            return
        name = obj["metadata"].get("name", "")
        delta = object_usage(rt.key, obj)
        for quota in sorted(quotas, key=lambda x: x["metadata"]["name"]):
            hard = {k: q(v) for k, v in ((quota.get("spec") or {}).get("hard") or {}).items()}
            if rt.key == K_PODS:
                missing = _missing_requests(obj, hard)
                if missing:
                    self._reject(rt, ns, name, f"failed quota: {quota['metadata']['name']}: must specify "
                                 + missing)
            relevant = {r: v for r, v in delta.items() if r in hard}
            if not relevant:
                continue
            used = self.usage(ns, list(relevant))
            over = [r for r, v in relevant.items() if used.get(r, Decimal(0)) + v > hard[r]]
            if over:
                over.sort()
                req = ",".join(f"{r}={fmt_q(relevant[r], r)}" for r in over)
                usd = ",".join(f"{r}={fmt_q(used.get(r, Decimal(0)), r)}" for r in over)
                lim = ",".join(f"{r}={fmt_q(hard[r], r)}" for r in over)
                self._reject(rt, ns, name, f"exceeded quota: {quota['metadata']['name']}, requested: {req}, "
                                           f"used: {usd}, limited: {lim}")

    def _reject(self, rt: ResourceType, ns: str, name: str, msg: str) -> None:
        err = forbidden(rt.plural, rt.group, name, msg)
        self.sim.stats.quota_rejections.append({"kind": rt.kind, "resource": rt.plural, "namespace": ns,
                                                "name": name, "message": err.message})
        raise err

    def usage(self, ns: str, resources: list[str]) -> dict[str, Decimal]:
        """Live usage in ``ns`` of the given quota resource names."""
        out: dict[str, Decimal] = {r: Decimal(0) for r in resources}
        pod_res = [r for r in resources if r in ("pods", "count/pods", "cpu", "memory", "ephemeral-storage")
                   or r.startswith("requests.") or r.startswith("limits.")]
        if pod_res:
            for p in self.sim.store.iter(K_PODS, ns):
                for r, v in pod_usage(p).items():
                    if r in out:
                        out[r] += v
        for r in resources:
            if r.startswith("count/") and r != "count/pods":
                plural, _, group = r[len("count/"):].partition(".")
                out[r] = Decimal(self.sim.store.count((group, plural), ns))
            elif r in ("configmaps", "secrets", "services", "resourcequotas", "persistentvolumeclaims"):
                out[r] = Decimal(self.sim.store.count(("", r), ns))
        return out

    # ---------------------------------------------------------- webhooks
    async def _webhooks(self, cfg_key: tuple[str, str], rt: ResourceType, ns: str, op: str, obj: Obj | None,
                        old: Obj | None, ctx: Ctx, sub: str) -> Any:
        if rt.group == "admissionregistration.k8s.io" or rt.virtual:
            return obj  # webhooks are never called for their own configuration objects
        configs = sorted(self.sim.store.iter(cfg_key), key=lambda c: c["metadata"]["name"])
        mutating = cfg_key == K_MWC
        for cfg in configs:
            for wh in cfg.get("webhooks") or ():
                if not self._matches(wh, rt, ns, op, obj, old, sub):
                    continue
                obj = await self._call(wh, mutating, rt, ns, op, obj, old, ctx, sub)
        return obj

    def _matches(self, wh: Obj, rt: ResourceType, ns: str, op: str, obj: Obj | None, old: Obj | None,
                 sub: str) -> bool:
        res = f"{rt.plural}/{sub}" if sub else rt.plural
        ok = False
        for rule in wh.get("rules") or ():
            ops = rule.get("operations") or []
            if "*" not in ops and op not in ops:
                continue
            if not _in(rule.get("apiGroups"), rt.group) or not _in(rule.get("apiVersions"), rt.version):
                continue
            scope = rule.get("scope", "*")
            if (scope == "Cluster" and rt.namespaced) or (scope == "Namespaced" and not rt.namespaced):
                continue
            for r in rule.get("resources") or ():
                if r == "*/*" or r == res or (r == "*" and not sub) or (
                        sub and r == f"*/{sub}") or (not sub and r.endswith("/*") and r[:-2] == rt.plural):
                    ok = True
        if not ok:
            return False
        nsel = wh.get("namespaceSelector")
        if nsel and (nsel.get("matchLabels") or nsel.get("matchExpressions")):
            if rt.namespaced:
                nso = self.sim.store.get(K_NS, "", ns)
                labels = (nso or {}).get("metadata", {}).get("labels") or {}
                if not object_selector_matches(nsel, labels):
                    return False
            elif rt.key == K_NS:
                src = obj or old or {}
                if not object_selector_matches(nsel, src.get("metadata", {}).get("labels")):
                    return False
        osel = wh.get("objectSelector")
        if osel and (osel.get("matchLabels") or osel.get("matchExpressions")):
            matched = any(o is not None and object_selector_matches(osel, o["metadata"].get("labels"))
                          for o in (obj, old))
            if not matched:
                return False
        return True

    def _ssl(self, cc: Obj) -> ssl.SSLContext:
        """The client TLS context for a webhook, built once per caBundle (building one costs ~25 ms)."""
        bundle = cc.get("caBundle") or ""
        cache = self._ssl_cache
        ctx = cache.get(bundle)
        if ctx is None:
            if bundle:
                ctx = ssl.create_default_context(cadata=base64.b64decode(bundle).decode())
            else:
                ctx = ssl.create_default_context()
            if len(cache) >= 64:
                cache.clear()
            cache[bundle] = ctx
        return ctx

    async def _call(self, wh: Obj, mutating: bool, rt: ResourceType, ns: str, op: str, obj: Obj | None,
                    old: Obj | None, ctx: Ctx, sub: str) -> Any:
        name = wh.get("name", "")
        cc = wh.get("clientConfig") or {}
        timeout = int(wh.get("timeoutSeconds") or 10)
        fail = wh.get("failurePolicy", "Fail") == "Fail"
        rid = str(uuid.uuid4())
        src = obj or old or {}
        gvk = {"group": rt.group, "version": rt.version, "kind": rt.kind}
        gvr = {"group": rt.group, "version": rt.version, "resource": rt.plural}
        opts_kind = {"CREATE": "CreateOptions", "UPDATE": "UpdateOptions", "DELETE": "DeleteOptions"}.get(op)
        request: Obj = {
            "uid": rid, "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
            "name": (src.get("metadata") or {}).get("name", ""), "operation": op,
            "userInfo": ctx.user.to_obj(), "object": obj, "oldObject": old, "dryRun": ctx.dry_run,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": opts_kind} if opts_kind else None,
        }
        if rt.namespaced:
            request["namespace"] = ns
        if sub:
            request["subResource"] = sub
            request["requestSubResource"] = sub
        review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
        url = cc.get("url")
        if not url and cc.get("service"):
            s = cc["service"]
            url = f"https://{s.get('name')}.{s.get('namespace')}.svc:{s.get('port', 443)}{s.get('path', '')}"
        sep = "&" if "?" in (url or "") else "?"
        full = f"{url}{sep}timeout={timeout}s"
        record: Obj = {"webhook": name, "operation": op, "resource": rt.plural, "subResource": sub,
                       "namespace": ns, "name": request["name"], "mutating": mutating}
        self.sim.stats.webhook_calls.append(record)
        try:
            if cc.get("service") and not cc.get("url"):
                raise OSError(f'dial tcp: lookup {s.get("name")}.{s.get("namespace")}.svc: no such host')
            if self._session is None:
                self._session = aiohttp.ClientSession()
            async with self._session.post(full, json=review, ssl=self._ssl(cc),
                                          timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                if resp.status != 200:
                    raise OSError(f"received invalid webhook response status code {resp.status}")
                data = await resp.json(content_type=None)
            response = data.get("response") or {}
            if response.get("uid") != rid:
                raise OSError(f'expected response.uid="{rid}", got "{response.get("uid")}"')
        except (TimeoutError, OSError, aiohttp.ClientError, ValueError, ssl.SSLError) as e:
            record["error"] = str(e) or type(e).__name__
            if not fail:
                return obj
            detail = str(e) or type(e).__name__
            if isinstance(e, asyncio.TimeoutError):
                detail = "context deadline exceeded"
            elif isinstance(e, aiohttp.ClientConnectorError):
                # Go's wording, so messages match the real apiserver's.
                detail = f"dial tcp {e.host}:{e.port}: connect: connection refused"
            raise internal(f'failed calling webhook "{name}": failed to call webhook: Post "{full}": '
                           f'{detail}') from e
        record["allowed"] = bool(response.get("allowed"))
        for w in response.get("warnings") or ():
            ctx.warnings.append(str(w))
        if not response.get("allowed"):
            st = response.get("status") or {}
            code = int(st.get("code") or 400)
            if code < 400:
                code = 400
            prefix = f'admission webhook "{name}" denied the request'
            if st.get("message"):
                msg = f"{prefix}: {st['message']}"
            elif st.get("reason"):
                msg = f"{prefix}: {st['reason']}"
            else:
                msg = f"{prefix} without explanation"
            raise ApiError(code, msg, st.get("reason", ""), st.get("details"))
        if mutating and response.get("patch") and obj is not None:
            if response.get("patchType") != "JSONPatch":
                raise internal(f'failed calling webhook "{name}": unsupported patch type '
                               f'"{response.get("patchType")}"')
            try:
                ops = json.loads(base64.b64decode(response["patch"]))
                patched: Obj = jsonpatch.JsonPatch(ops).apply(copy.deepcopy(obj))
                obj = patched
            except (ValueError, jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as e:
                raise internal(f'failed calling webhook "{name}": {e}') from e
            record["patched"] = True
        return obj

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _in(values: list[str] | None, v: str) -> bool:
    vs = values or []
    return "*" in vs or v in vs


def _minmax(item: Obj, req: dict[str, Any], lim: dict[str, Any], typ: str) -> list[str]:
    errs: list[str] = []
    for r, v in (item.get("min") or {}).items():
        if r not in req:
            errs.append(f"minimum {r} usage per {typ} is {v}.  No request is specified")
        elif q(req[r]) < q(v):
            errs.append(f"minimum {r} usage per {typ} is {v}, but request is {req[r]}")
    for r, v in (item.get("max") or {}).items():
        if r not in lim:
            errs.append(f"maximum {r} usage per {typ} is {v}.  No limit is specified")
        elif q(lim[r]) > q(v):
            errs.append(f"maximum {r} usage per {typ} is {v}, but limit is {lim[r]}")
    for r, v in (item.get("maxLimitRequestRatio") or {}).items():
        if r in req and r in lim and q(req[r]) > 0 and q(lim[r]) / q(req[r]) > q(v):
            ratio = q(lim[r]) / q(req[r])
            errs.append(f"{r} max limit to request ratio per {typ} is {v}, but provided ratio is {ratio:f}")
    return errs


def _missing_requests(pod: Obj, hard: dict[str, Decimal]) -> str:
    """Pods must state requests/limits for quota-constrained cpu/memory (as real)."""
    need: list[str] = []
    for res, kind in (("requests.cpu", "requests"), ("cpu", "requests"), ("requests.memory", "requests"),
                      ("memory", "requests"), ("limits.cpu", "limits"), ("limits.memory", "limits")):
        if res in hard:
            rname = res.split(".")[-1]
            label = f"{kind}.{rname}"
            missing = [c.get("name", "") for c in (pod.get("spec") or {}).get("containers") or ()
                       if rname not in ((c.get("resources") or {}).get(kind) or {})]
            if missing and label not in [n.split(" ")[0] for n in need]:
                need.append(f"{label} for: {','.join(missing)}")
    return "; ".join(need)
