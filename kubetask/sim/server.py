"""HTTP layer: routing, authentication, content negotiation, watch streaming, discovery."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import TYPE_CHECKING, Any

import yaml
from aiohttp import web

from kubetask.sim import openapi
from kubetask.sim.api import Ctx, Sim, forbidden_error, now_iso
from kubetask.sim.auth import ANONYMOUS, Attributes, UserInfo
from kubetask.sim.errors import ApiError, bad_request, not_found
from kubetask.sim.resources import GROUP_ORDER, ResourceType
from kubetask.sim.selectors import labels_match, parse_field_selector, parse_label_selector
from kubetask.sim.store import TooOld, dumps
from kubetask.sim.tables import to_table

if TYPE_CHECKING:
    from kubetask.sim.controllers import Controllers

Obj = dict[str, Any]

K8S_VERSION = {"major": "1", "minor": "36", "emulationMajor": "1", "emulationMinor": "36",
               "minCompatibilityMajor": "1", "minCompatibilityMinor": "35", "gitVersion": "v1.36.0-kubetask-sim",
               "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
               "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.25.0", "compiler": "gc",
               "platform": "linux/amd64"}

_SUB_KIND = {"log": ("", "", "Pod"), "binding": ("", "", "Binding"), "eviction": ("policy", "v1", "Eviction"),
             "token": ("authentication.k8s.io", "v1", "TokenRequest"), "scale": ("autoscaling", "v1", "Scale")}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=dumps(body), status=status, content_type="application/json", headers=headers)


def _dup_hook(dups: list[str]) -> Any:
    def hook(pairs: list[tuple[str, Any]]) -> Obj:
        out: Obj = {}
        for k, v in pairs:
            if k in out:
                dups.append(k)
            out[k] = v
        return out

    return hook


class Server:
    """The aiohttp application of the sim apiserver."""

    def __init__(self, sim: Sim, controllers: Controllers | None = None) -> None:
        self.sim = sim
        self.controllers = controllers
        self.app = web.Application(client_max_size=8 * 1024 * 1024, middlewares=[self._errors])
        self.app.router.add_route("*", "/{tail:.*}", self.dispatch)
        self.closing = asyncio.Event()
        self.bookmark_interval = 10.0
        self._openapi_cache: dict[tuple[str, str, int], Obj] = {}

    @web.middleware
    async def _errors(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            resp: web.StreamResponse = await handler(request)
            return resp
        except ApiError as e:
            return json_response(e.status(), e.code, e.headers or None)

    # ================================================================ routing
    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        sim = self.sim
        path = request.path.rstrip("/") or "/"
        auth = request.headers.get("Authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        user = sim.authn.authenticate(token)
        if user is None:
            raise ApiError(401, "Unauthorized", "Unauthorized")
        sim.stats.requests[request.method] += 1
        if request.headers.get("Impersonate-User"):
            user = self._impersonate(request, user)
        parts = [p for p in path.split("/") if p]
        if parts and parts[0] in ("api", "apis") and self._is_resource_path(parts):
            return await self._resource(request, parts, user)
        # Non-resource URLs are authorized with the request path.
        verb = {"GET": "get", "HEAD": "head", "POST": "post", "PUT": "put", "DELETE": "delete",
                "PATCH": "patch"}.get(request.method, "get")
        ok, _ = sim.authz.authorize(user, Attributes(verb, path=path, resource_request=False))
        if not ok:
            raise ApiError(403, f'forbidden: User "{user.username}" cannot {verb} path "{path}"', "Forbidden",
                           {})
        if path in ("/healthz", "/livez", "/readyz"):
            return web.Response(text="ok")
        if path.startswith(("/healthz/", "/livez/", "/readyz/")):
            return web.Response(text="ok")
        if path == "/version":
            return json_response(K8S_VERSION)
        if path == "/api":
            return json_response({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": request.host}]})
        if path == "/apis":
            return json_response(self._api_group_list())
        if path == "/api/v1":
            return json_response(self._resource_list("", "v1"))
        if len(parts) == 2 and parts[0] == "apis":
            g = self._api_group(parts[1])
            if g is None:
                raise ApiError(404, "the server could not find the requested resource", "NotFound")
            return json_response(g)
        if len(parts) == 3 and parts[0] == "apis":
            if parts[2] not in sim.registry.groups().get(parts[1], []):
                raise ApiError(404, "the server could not find the requested resource", "NotFound")
            return json_response(self._resource_list(parts[1], parts[2]))
        if path == "/openapi/v2":
            return json_response(openapi.v2_doc(sim.registry))
        if path == "/openapi/v3":
            return json_response(self._openapi_root())
        if parts[:2] == ["openapi", "v3"]:
            rest = parts[2:]
            if rest[:1] == ["api"] and len(rest) == 2:
                return self._openapi_gv("", rest[1])
            if rest[:1] == ["apis"] and len(rest) == 3:
                return self._openapi_gv(rest[1], rest[2])
        raise ApiError(404, "the server could not find the requested resource", "NotFound", {})

    def _impersonate(self, request: web.Request, user: UserInfo) -> UserInfo:
        """``Impersonate-User``/``-Group`` headers, authorized by the ``impersonate`` verb as real."""
        target = request.headers["Impersonate-User"]
        groups = request.headers.getall("Impersonate-Group", [])
        checks = [("users", target)] + [("groups", g) for g in groups]
        if target.startswith("system:serviceaccount:"):
            _, _, ns, sa = target.split(":", 3)
            checks[0] = ("serviceaccounts", sa)
        for res, name in checks:
            ns = target.split(":")[2] if res == "serviceaccounts" else ""
            ok, _ = self.sim.authz.authorize(user, Attributes("impersonate", "", res, "", ns, name))
            if not ok:
                raise ApiError(403, f'{res} "{name}" is forbidden: User "{user.username}" cannot impersonate '
                                    f'resource "{res}" in API group "" at the cluster scope', "Forbidden",
                               {"name": name, "kind": res})
        gs = list(groups)
        if target.startswith("system:serviceaccount:"):
            ns = target.split(":")[2]
            gs += ["system:serviceaccounts", f"system:serviceaccounts:{ns}"]
        if "system:authenticated" not in gs:
            gs.append("system:authenticated")
        return UserInfo(target, gs)

    def _is_resource_path(self, parts: list[str]) -> bool:
        return (parts[0] == "api" and len(parts) >= 3) or (parts[0] == "apis" and len(parts) >= 4)

    # =========================================================== discovery
    def _api_group(self, group: str) -> Obj | None:
        vs = self.sim.registry.groups().get(group)
        if not vs:
            return None
        versions = [{"groupVersion": f"{group}/{v}", "version": v} for v in vs]
        return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": versions,
                "preferredVersion": versions[0]}

    def _api_group_list(self) -> Obj:
        groups = [g for g in self.sim.registry.groups() if g]
        order = {g: i for i, g in enumerate(GROUP_ORDER)}
        groups.sort(key=lambda g: (order.get(g, len(order)), g))
        out = [self._api_group(g) for g in groups]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [g for g in out if g]}

    def _resource_list(self, group: str, version: str) -> Obj:
        res: list[Obj] = []
        for rt in sorted(self.sim.registry.in_group_version(group, version), key=lambda r: r.plural):
            entry: Obj = {"name": rt.plural, "singularName": rt.singular, "namespaced": rt.namespaced,
                          "kind": rt.kind, "verbs": list(rt.verbs)}
            if rt.short_names:
                entry["shortNames"] = list(rt.short_names)
            if rt.categories:
                entry["categories"] = list(rt.categories)
            entry["storageVersionHash"] = openapi.doc_hash({"r": rt.qualified})[:12]
            res.append(entry)
            for sub, verbs in sorted(rt.subresources.items()):
                sg, sv, sk = _SUB_KIND.get(sub, ("", "", rt.kind))
                se: Obj = {"name": f"{rt.plural}/{sub}", "singularName": "", "namespaced": rt.namespaced,
                           "kind": sk, "verbs": list(verbs)}
                if sg:
                    se["group"], se["version"] = sg, sv
                res.append(se)
        gv = f"{group}/{version}" if group else version
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": res}

    def _openapi_root(self) -> Obj:
        paths: Obj = {}
        for g, vs in self.sim.registry.groups().items():
            for v in vs:
                p = f"api/{v}" if not g else f"apis/{g}/{v}"
                doc = self._gv_doc(g, v)
                paths[p] = {"serverRelativeURL": f"/openapi/v3/{p}?hash={openapi.doc_hash(doc)}"}
        return {"paths": paths}

    def _gv_doc(self, g: str, v: str) -> Obj:
        # Cache per registry generation: CRDs change the documents.
        gen = id(self.sim.registry.crds) + sum(len(x) for x in self.sim.registry.crds.values()) * 7919 + \
            hash(tuple(sorted((n, json.dumps([rt.crd_version for rt in rts], sort_keys=True))
                              for n, rts in self.sim.registry.crds.items())))
        key = (g, v, gen)
        doc = self._openapi_cache.get(key)
        if doc is None:
            doc = openapi.gv_doc(self.sim.registry, g, v)
            self._openapi_cache = {k: d for k, d in self._openapi_cache.items() if k[2] == gen}
            self._openapi_cache[key] = doc
        return doc

    def _openapi_gv(self, g: str, v: str) -> web.Response:
        if v not in self.sim.registry.groups().get(g, []):
            raise ApiError(404, "the server could not find the requested resource", "NotFound", {})
        return json_response(self._gv_doc(g, v))

    # ============================================================ resources
    async def _resource(self, request: web.Request, parts: list[str], user: UserInfo) -> web.StreamResponse:
        if parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        else:
            group, version, rest = parts[1], parts[2], parts[3:]
        if version not in self.sim.registry.groups().get(group, []):
            raise ApiError(404, "the server could not find the requested resource", "NotFound", {})
        watch_path = False
        if rest and rest[0] == "watch":
            watch_path, rest = True, rest[1:]
        ns = ""
        if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
            ns, rest = rest[1], rest[2:]
        plural = rest[0]
        name = rest[1] if len(rest) > 1 else ""
        sub = rest[2] if len(rest) > 2 else ""
        if len(rest) > 3:
            raise ApiError(404, "the server could not find the requested resource", "NotFound", {})
        rt = self.sim.registry.get(group, version, plural)
        if rt is None:
            raise ApiError(404, "the server could not find the requested resource", "NotFound", {})
        if rt.namespaced is False and ns:
            raise ApiError(404, "the server could not find the requested resource", "NotFound", {})
        if sub and sub not in rt.subresources:
            raise ApiError(404, "the server could not find the requested resource", "NotFound", {})
        q = request.query
        ctx = Ctx(user=user, dry_run=q.get("dryRun") == "All", field_manager=q.get("fieldManager", ""))
        fv = q.get("fieldValidation", "Warn") or "Warn"
        if fv not in ("Strict", "Warn", "Ignore"):
            raise bad_request(f"fieldValidation parameter unsupported: {fv}")
        ctx.field_validation = fv
        if "dryRun" in q and q["dryRun"] != "All":
            raise bad_request(f'Invalid dryRun: "{q["dryRun"]}": supported values: "All"')
        m = request.method
        is_watch = watch_path or q.get("watch") in ("true", "1", "True")
        self.sim.stats.request_kinds[f"{m} {plural}{'/' + sub if sub else ''}{' watch' if is_watch else ''}"] += 1
        if rt.virtual:
            if m != "POST":
                raise _method_not_allowed(m)
            return await self._review(rt, ns, await self._body(request, ctx), ctx)
        if not name:
            if m == "GET":
                if is_watch:
                    return await self._watch(request, rt, ns or None, ctx)
                lst = self.sim.list(rt, ns or None, dict(q), ctx)
                return self._maybe_table(request, rt, lst["items"], lst["metadata"], lst)
            if m == "POST":
                if rt.namespaced and not ns:
                    raise _method_not_allowed(m)
                body = await self._body(request, ctx)
                obj = await self.sim.create(rt, ns, body, ctx)
                return self._out(request, rt, obj, ctx, 201)
            if m == "DELETE":
                opts = await self._delete_options(request, q)
                res = await self.sim.delete_collection(rt, ns or None, dict(q), opts, ctx)
                return self._out(request, rt, res, ctx, 200)
            raise _method_not_allowed(m)
        if sub == "log":
            if m != "GET":
                raise _method_not_allowed(m)
            return await self._log(request, rt, ns, name, ctx)
        if sub == "binding" or sub == "eviction":
            if m != "POST":
                raise _method_not_allowed(m)
            body = await self._body(request, ctx)
            return await self._binding(request, rt, ns, name, sub, body, ctx)
        if sub == "token":
            if m != "POST":
                raise _method_not_allowed(m)
            body = await self._body(request, ctx)
            return self._token(rt, ns, name, body, ctx)
        if m == "GET":
            if is_watch:
                return await self._watch(request, rt, ns or None, ctx, name)
            obj = self.sim.get(rt, ns, name, ctx, sub)
            return self._maybe_table(request, rt, [obj], {"resourceVersion": obj["metadata"]["resourceVersion"]},
                                     obj)
        if m == "PUT":
            body = await self._body(request, ctx)
            obj = await self.sim.update(rt, ns, name, body, ctx, sub)
            return self._out(request, rt, obj, ctx, 200)
        if m == "PATCH":
            ct = request.headers.get("Content-Type", "")
            raw = await request.read()
            try:
                if ct.startswith("application/apply-patch+yaml"):
                    pbody = yaml.safe_load(raw)
                else:
                    pbody = json.loads(raw, object_pairs_hook=_dup_hook(ctx.duplicates)) if raw else {}
            except (ValueError, yaml.YAMLError) as e:
                raise bad_request(f"error decoding patch: {e}") from e
            obj = await self.sim.patch(rt, ns, name, pbody, ct, ctx, sub)
            return self._out(request, rt, obj, ctx, 200)
        if m == "DELETE":
            if sub:
                raise _method_not_allowed(m)
            opts = await self._delete_options(request, q)
            res = await self.sim.delete(rt, ns, name, opts, ctx)
            code = 200
            return self._out(request, rt, res, ctx, code)
        raise _method_not_allowed(m)

    async def _body(self, request: web.Request, ctx: Ctx) -> Any:
        raw = await request.read()
        ct = request.headers.get("Content-Type", "application/json")
        if not raw:
            raise bad_request("the body of the request was empty")
        try:
            if "yaml" in ct:
                return yaml.safe_load(raw)
            if "protobuf" in ct:
                from kubetask.sim.proto import decode

                return decode(raw)
            return json.loads(raw, object_pairs_hook=_dup_hook(ctx.duplicates))
        except (ValueError, yaml.YAMLError) as e:
            raise bad_request(f"couldn't get version/kind; json parse error: {e}") from e

    async def _delete_options(self, request: web.Request, q: Any) -> Obj:
        opts: Obj = {}
        if request.can_read_body:
            raw = await request.read()
            if raw:
                try:
                    opts = json.loads(raw)
                except ValueError as e:
                    raise bad_request(f"error decoding DeleteOptions: {e}") from e
        if "propagationPolicy" in q:
            opts["propagationPolicy"] = q["propagationPolicy"]
        if "gracePeriodSeconds" in q:
            opts["gracePeriodSeconds"] = int(q["gracePeriodSeconds"])
        if "orphanDependents" in q:
            opts["orphanDependents"] = q["orphanDependents"] == "true"
        return opts

    def _out(self, request: web.Request, rt: ResourceType, obj: Obj, ctx: Ctx, code: int) -> web.Response:
        headers = {}
        if ctx.warnings:
            headers["Warning"] = ", ".join(f'299 - {json.dumps(w)}' for w in ctx.warnings)
        return json_response(obj, code, headers)

    def _maybe_table(self, request: web.Request, rt: ResourceType, items: list[Obj], meta: Obj,
                     plain: Obj) -> web.Response:
        accept = request.headers.get("Accept", "")
        if "as=Table" in accept:
            inc = request.query.get("includeObject", "Metadata")
            return json_response(to_table(rt, items, dict(meta), inc))
        if "as=PartialObjectMetadata" in accept:
            if "items" in plain:
                return json_response({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
                                      "metadata": meta, "items": [
                                          {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                           "metadata": o["metadata"]} for o in items]})
            return json_response({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                  "metadata": plain["metadata"]})
        return json_response(plain)

    # ================================================================= watch
    async def _watch(self, request: web.Request, rt: ResourceType, ns: str | None, ctx: Ctx,
                     name: str = "") -> web.StreamResponse:
        self.sim.authorize(ctx, "watch", rt, ns or "", name)
        q = request.query
        reqs = parse_label_selector(q.get("labelSelector"))
        fsel = q.get("fieldSelector")
        if name:
            fsel = f"metadata.name={name}" + (f",{fsel}" if fsel else "")
        fmatch = parse_field_selector(fsel, rt.key)

        def match(o: Obj) -> bool:
            if reqs and not labels_match(reqs, o["metadata"].get("labels")):
                return False
            return fmatch is None or fmatch(o)

        matcher = match if (reqs or fmatch) else None
        rv = q.get("resourceVersion", "")
        bookmarks = q.get("allowWatchBookmarks") in ("true", "1")
        timeout = float(q.get("timeoutSeconds") or 1800)
        send_initial = q.get("sendInitialEvents") == "true"
        store = self.sim.store
        initial: list[Obj] = []
        too_old: int | None = None
        try:
            if rv in ("", "0") or send_initial:
                # Synthetic ADDED events for the current state, then live events: one atomic step.
                initial = [o for o in store.list_sorted(rt.key, ns) if matcher is None or matcher(o)]
                w = store.watch(rt.key, ns, matcher, None)
            else:
                try:
                    since = int(rv)
                except ValueError as e:
                    raise bad_request(f'invalid resource version: strconv.ParseUint: parsing "{rv}": invalid '
                                      'syntax') from e
                w = store.watch(rt.key, ns, matcher, min(since, store.rv))
        except TooOld as e:
            too_old = int(e.args[0])
            w = None
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json",
                                                       "Cache-Control": "no-cache, private"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        if w is None:
            err = {"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                               "status": "Failure",
                                               "message": f"too old resource version: {too_old} "
                                                          f"({store._evicted.get(rt.key, 0) + 1})",
                                               "reason": "Expired", "code": 410}}
            await resp.write(dumps(err) + b"\n")
            await resp.write_eof()
            return resp
        deadline = time.monotonic() + timeout
        try:
            if initial:
                chunk = b"".join(b'{"type":"ADDED","object":' + dumps(self.sim.view(rt, o)) + b"}\n"
                                 for o in initial)
                await resp.write(chunk)
            if send_initial and bookmarks:
                await resp.write(dumps({"type": "BOOKMARK", "object": {
                    "kind": rt.kind, "apiVersion": rt.api_version, "metadata": {
                        "resourceVersion": str(store.rv),
                        "annotations": {"k8s.io/initial-events-end": "true"}}}}) + b"\n")
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                wait = min(remaining, self.bookmark_interval) if bookmarks else remaining
                try:
                    item = await asyncio.wait_for(w.queue.get(), wait)
                except TimeoutError:
                    if bookmarks and time.monotonic() < deadline:
                        await resp.write(dumps({"type": "BOOKMARK", "object": {
                            "kind": rt.kind, "apiVersion": rt.api_version,
                            "metadata": {"resourceVersion": str(store.rv)}}}) + b"\n")
                    continue
                if item is None:
                    break
                batch = [item]
                while not w.queue.empty() and len(batch) < 500:
                    nxt = w.queue.get_nowait()
                    if nxt is None:
                        w.queue.put_nowait(None)
                        break
                    batch.append(nxt)
                data = b"".join(ev.line(t) if ev.obj.get("apiVersion") == rt.api_version else
                                b'{"type":"' + t.encode() + b'","object":' + dumps(self.sim.view(rt, ev.obj)) + b"}\n"
                                for t, ev in batch)
                await resp.write(data)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            store.unwatch(w)
        with contextlib.suppress(ConnectionResetError, RuntimeError):
            await resp.write_eof()
        return resp

    # ========================================================= subresources
    async def _log(self, request: web.Request, rt: ResourceType, ns: str, name: str, ctx: Ctx) -> web.StreamResponse:
        self.sim.authorize(ctx, "get", rt, ns, name, "log")
        pod = self.sim.get(rt, ns, name)
        if self.controllers is None:
            raise bad_request("logs are not available")
        return await self.controllers.kubelet.serve_log(request, pod)

    async def _binding(self, request: web.Request, rt: ResourceType, ns: str, name: str, sub: str, body: Any,
                       ctx: Ctx) -> web.Response:
        self.sim.authorize(ctx, "create", rt, ns, name, sub)
        if sub == "eviction":
            res = await self.sim.delete(rt, ns, name, (body or {}).get("deleteOptions") or {}, Ctx())
            return json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                  "code": 201}, 201) if res else json_response(res)
        target = ((body or {}).get("target") or {}).get("name")
        if not target:
            raise bad_request("target is required")
        if self.controllers is None:
            raise bad_request("no scheduler")
        await self.controllers.scheduler.bind(ns, name, target)
        return json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                              "code": 201}, 201)

    def _token(self, rt: ResourceType, ns: str, name: str, body: Any, ctx: Ctx) -> web.Response:
        self.sim.authorize(ctx, "create", rt, ns, name, "token")
        sa = self.sim.store.get(rt.key, ns, name)
        if sa is None:
            raise not_found("serviceaccounts", "", name)
        spec = (body or {}).get("spec") or {}
        token, exp = self.sim.authn.issue_sa_token(ns, sa, int(spec.get("expirationSeconds") or 3600),
                                                   spec.get("audiences"))
        from datetime import UTC, datetime

        out = {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
               "metadata": {"name": name, "namespace": ns, "creationTimestamp": now_iso()},
               "spec": {"audiences": spec.get("audiences") or ["https://kubernetes.default.svc.cluster.local"],
                        "expirationSeconds": int(spec.get("expirationSeconds") or 3600),
                        "boundObjectRef": spec.get("boundObjectRef")},
               "status": {"token": token,
                          "expirationTimestamp": datetime.fromtimestamp(exp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}}
        return json_response(out, 201)

    async def _review(self, rt: ResourceType, ns: str, body: Any, ctx: Ctx) -> web.Response:
        if not isinstance(body, dict):
            raise bad_request("the object provided is unrecognized")
        ok, _ = self.sim.authz.authorize(ctx.user, Attributes("create", rt.group, rt.plural, "", ns))
        if not ok:
            self.sim.record_forbidden(ctx.user, "create", rt, "", ns, "")
            raise forbidden_error(ctx.user, "create", rt.group, rt.plural, "", ns, "")
        spec = body.get("spec") or {}
        out = dict(body)
        out.setdefault("metadata", {})
        out["apiVersion"], out["kind"] = rt.api_version, rt.kind
        if rt.plural == "tokenreviews":
            u = self.sim.authn.authenticate(spec.get("token") or "") if spec.get("token") else None
            if u is None or u is ANONYMOUS:
                out["status"] = {"authenticated": False, "user": {},
                                 "error": "[invalid bearer token, service account token has been invalidated]"}
            else:
                user: Obj = {"username": u.username, "groups": u.groups}
                if u.uid:
                    user["uid"] = u.uid
                if u.extra:
                    user["extra"] = u.extra
                out["status"] = {"authenticated": True, "user": user,
                                 "audiences": spec.get("audiences") or ["https://kubernetes.default.svc.cluster.local"]}
            return json_response(out, 201)
        if rt.plural in ("selfsubjectaccessreviews", "subjectaccessreviews"):
            if rt.plural == "selfsubjectaccessreviews":
                who = ctx.user
            else:
                who = UserInfo(spec.get("user", ""), list(spec.get("groups") or []), spec.get("uid", ""))
            ra = spec.get("resourceAttributes")
            nra = spec.get("nonResourceAttributes")
            if ra is not None:
                attrs = Attributes(ra.get("verb", ""), ra.get("group", ""), ra.get("resource", ""),
                                   ra.get("subresource", ""), ra.get("namespace", ""), ra.get("name", ""))
            elif nra is not None:
                attrs = Attributes(nra.get("verb", ""), path=nra.get("path", ""), resource_request=False)
            else:
                raise ApiError(422, f'{rt.kind}.authorization.k8s.io "" is invalid: spec.resourceAttributes: '
                                    "Invalid value: \"null\": exactly one of nonResourceAttributes or "
                                    "resourceAttributes must be specified", "Invalid")
            allowed, reason = self.sim.authz.authorize(who, attrs)
            st: Obj = {"allowed": allowed}
            if reason:
                st["reason"] = reason
            out["status"] = st
            return json_response(out, 201)
        if rt.plural == "selfsubjectrulesreviews":
            rules = [r for r, _ in self.sim.authz.rules_for(ctx.user, spec.get("namespace", ""))]
            if ctx.user.is_master:
                rules = [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                         {"nonResourceURLs": ["*"], "verbs": ["*"]}]
            out["status"] = {
                "resourceRules": [{k: r[k] for k in ("verbs", "apiGroups", "resources", "resourceNames") if k in r}
                                  for r in rules if not r.get("nonResourceURLs")],
                "nonResourceRules": [{"verbs": r["verbs"], "nonResourceURLs": r["nonResourceURLs"]}
                                     for r in rules if r.get("nonResourceURLs")],
                "incomplete": False}
            return json_response(out, 201)
        raise _method_not_allowed("POST")


def _method_not_allowed(m: str) -> ApiError:
    return ApiError(405, "the server does not allow this method on the requested resource", "MethodNotAllowed",
                    {})
