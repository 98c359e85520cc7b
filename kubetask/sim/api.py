"""The request pipeline of the sim: CRUD with admission, validation, status isolation and deletion.

``Sim`` is used by the HTTP layer and by the in-process controllers alike, so controller
writes go through the same admission chain (quota, webhooks) as client writes — as real.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubetask.sim import builtin_schemas as bs
from kubetask.sim import builtins, schema, validation
from kubetask.sim.auth import K_CROLES, K_ROLES, SYSTEM, Attributes, Authenticator, Authorizer, UserInfo, format_rule
from kubetask.sim.errors import ApiError, FieldError, already_exists, conflict, forbidden, invalid, not_found
from kubetask.sim.keys import K_CRD, K_EVENTS, K_JOBS, K_NS, K_PODS, K_SA
from kubetask.sim.patch import json_patch, merge_patch, strategic_merge_patch
from kubetask.sim.registry import Registry
from kubetask.sim.resources import ResourceType
from kubetask.sim.selectors import labels_match, parse_field_selector, parse_label_selector
from kubetask.sim.store import Key, Store

Obj = dict[str, Any]


_GEN_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(s: str | None) -> float | None:
    if not s:
        return None
    try:
        return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@dataclass
class Ctx:
    """Per-request options and outputs."""

    user: UserInfo = field(default_factory=lambda: SYSTEM)
    dry_run: bool = False
    field_validation: str = "Strict"  # real default for API calls is Warn; the HTTP layer sets it
    duplicates: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    field_manager: str = ""


@dataclass
class Stats:
    """The sim's own records, for test assertions."""

    create_calls: Counter[str] = field(default_factory=Counter)
    creates: Counter[str] = field(default_factory=Counter)
    created_names: Counter[str] = field(default_factory=Counter)
    quota_rejections: list[dict[str, str]] = field(default_factory=list)
    pods_per_job: Counter[str] = field(default_factory=Counter)
    webhook_calls: list[dict[str, Any]] = field(default_factory=list)
    failed_creates: list[dict[str, str]] = field(default_factory=list)
    requests: Counter[str] = field(default_factory=Counter)
    #: requests by "METHOD plural[/sub][ watch]", e.g. "PATCH tasks/status" (for benchmarks)
    request_kinds: Counter[str] = field(default_factory=Counter)
    forbidden: list[dict[str, str]] = field(default_factory=list)


class Sim:
    """In-loop core: registry, store, auth and the CRUD pipeline."""

    def __init__(self) -> None:
        self.store = Store()
        self.registry = Registry()
        self.authn = Authenticator(self.store)
        self.authz = Authorizer(self.store)
        self.stats = Stats()
        self.started = time.time()
        from kubetask.sim.admission import Admission

        self.admission = Admission(self)
        self._wakeups: list[asyncio.Event] = []
        # (namespace, involved uid, reason, message) -> names of matching Events, in insertion
        # order: lets ``record_event`` find the Event to bump without scanning the namespace.
        self._event_index: dict[tuple[str, Any, Any, Any], dict[str, None]] = {}
        self.store.subscribe(self._index_event)

    # ================================================================ helpers
    def rt_for(self, key: Key) -> ResourceType:
        rt = self.registry.for_key(key)
        if rt is None:
            raise ApiError(404, f"the server could not find the requested resource ({key[1]})", "NotFound")
        return rt

    def authorize(self, ctx: Ctx, verb: str, rt: ResourceType, ns: str, name: str = "", sub: str = "") -> None:
        ok, _ = self.authz.authorize(ctx.user, Attributes(verb, rt.group, rt.plural, sub, ns, name))
        if not ok:
            self.record_forbidden(ctx.user, verb, rt, sub, ns, name)
            raise forbidden_error(ctx.user, verb, rt.group, rt.plural, sub, ns, name)

    def record_forbidden(self, user: UserInfo, verb: str, rt: ResourceType, sub: str, ns: str, name: str) -> None:
        """Keep every RBAC denial, so tests can prove a component's permissions are sufficient."""
        self.stats.forbidden.append({"user": user.username, "verb": verb, "group": rt.group,
                                     "resource": f"{rt.plural}/{sub}" if sub else rt.plural,
                                     "namespace": ns, "name": name})

    def check_namespace(self, rt: ResourceType, ns: str, name: str, creating: bool) -> None:
        if not rt.namespaced:
            return
        nso = self.store.get(K_NS, "", ns)
        if nso is None:
            raise not_found("namespaces", "", ns)
        if creating and nso["metadata"].get("deletionTimestamp"):
            raise forbidden(rt.plural, rt.group, name,
                            f"unable to create new content in namespace {ns} because it is being terminated")

    def _schema(self, rt: ResourceType) -> Obj | None:
        if rt.crd_version is not None:
            s: Obj | None = ((rt.crd_version.get("schema") or {}).get("openAPIV3Schema"))
            return s
        return None

    def _field_validation(self, rt: ResourceType, body: Obj, ctx: Ctx) -> None:
        """Strict/Warn/Ignore handling of unknown and duplicate fields (server-side field validation)."""
        if ctx.field_validation == "Ignore":
            return
        s = self._schema(rt)
        if s is not None:
            unknown = schema.unknown_fields(body, s)
        else:
            bschema = bs.schema_for(rt.group, rt.version, rt.kind)
            unknown = [u for u in bs.unknown_fields(body, bschema) if not u.startswith("status")] \
                if bschema else []
            unknown = [u for u in unknown if not u.startswith("metadata.managedFields")]
        msgs = [f'unknown field "{u}"' for u in unknown] + [f'duplicate field "{d}"' for d in ctx.duplicates]
        if not msgs:
            return
        if ctx.field_validation == "Strict":
            raise ApiError(400, "strict decoding error: " + ", ".join(msgs), "BadRequest")
        ctx.warnings.extend(msgs)

    def _prepare_cr(self, rt: ResourceType, obj: Obj) -> Obj:
        s = self._schema(rt)
        if s is None:
            return obj
        obj = schema.prune(obj, s, root=True)
        body: Obj = schema.apply_defaults({k: v for k, v in obj.items() if k != "metadata"}, s)
        body["metadata"] = obj.get("metadata", {})
        return body

    def _validate(self, rt: ResourceType, obj: Obj, old: Obj | None, sub: str = "") -> None:
        meta = obj["metadata"]
        name = meta.get("name", "")
        errs: list[FieldError] = []
        if old is None:
            if rt.is_custom:
                errs.extend(validation.validate_name(("", ""), meta))
            else:
                errs.extend(builtins.validate_name(rt.key, meta))
        errs.extend(validation.validate_meta(meta))
        s = self._schema(rt)
        try:
            if s is not None:
                errs.extend(schema.validate_cr(obj, s, old))
            elif rt.key == K_CRD:
                errs.extend(schema.validate_crd(obj, old))
            else:
                errs.extend(builtins.validate_object(rt.key, obj, old, sub))
        except validation.DecodeError as e:
            raise validation.decode_error(rt.kind, rt.version, e) from e
        if errs:
            raise invalid(rt.kind, rt.group, name, errs)

    def _check_kind(self, rt: ResourceType, body: Obj) -> None:
        av, kind = body.get("apiVersion"), body.get("kind")
        if av and av != rt.api_version:
            # A different served version of the same group/kind is converted (strategy None).
            g, _, v = av.rpartition("/")
            other = self.registry.by_gvk.get((g, v, rt.kind))
            if other is None or other.key != rt.key:
                raise ApiError(400, f"the API version in the data ({av}) does not match the expected API "
                                    f"version ({rt.api_version})", "BadRequest")
        if kind and kind != rt.kind:
            raise ApiError(400, f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})",
                           "BadRequest")
        body["apiVersion"], body["kind"] = rt.api_version, rt.kind

    # ================================================================= create
    async def create(self, rt: ResourceType, ns: str, raw: Any, ctx: Ctx | None = None) -> Obj:
        """Create ``body`` in ``ns`` through authorization, admission, validation and quota."""
        ctx = ctx or Ctx()
        self.stats.create_calls[rt.plural] += 1
        if not isinstance(raw, dict):
            raise ApiError(400, "the object provided is unrecognized (must be of type object)", "BadRequest")
        body: Obj = copy.deepcopy(raw)
        self._check_kind(rt, body)
        meta = body.get("metadata")
        if not isinstance(meta, dict):
            meta = body["metadata"] = {}
        if rt.namespaced:
            if meta.get("namespace") and meta["namespace"] != ns:
                raise ApiError(400, "the namespace of the provided object does not match the namespace sent on "
                                    "the request", "BadRequest")
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            base = str(meta["generateName"])[:58]
            meta["name"] = base + "".join(random.choice(_GEN_ALPHABET) for _ in range(5))
        name = meta.get("name", "")
        self.authorize(ctx, "create", rt, ns, "")
        if not name:
            raise invalid(rt.kind, rt.group, "", [FieldError("metadata.name", "Required value",
                                                             "name or generateName is required")])
        if meta.get("resourceVersion"):
            raise ApiError(500, "resourceVersion should not be set on objects to be created", "InternalError")
        self.check_namespace(rt, ns, name, True)
        self._field_validation(rt, body, ctx)
        # Server-owned metadata never comes from the client.
        for f in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation",
                  "selfLink", "managedFields"):
            meta.pop(f, None)
        if rt.has_status:
            st = builtins.initial_status(rt.key, body)
            if st is None:
                body.pop("status", None)
            else:
                body["status"] = st
        body = self._prepare_cr(rt, body) if rt.is_custom else builtins.default_object(rt.key, body)
        if rt.key == K_CRD:
            body = schema.default_crd(body)
            body.pop("status", None)
        if rt.key[0] == "rbac.authorization.k8s.io":
            self._escalation_check(rt, ns, body, ctx)
        body = dict(await self.admission.mutate(rt, ns, "CREATE", body, None, ctx))
        if rt.is_custom:
            body = self._prepare_cr(rt, body)
        # rest.BeforeCreate: system fields and the strategy's PrepareForCreate, then validation.
        meta = body["metadata"]
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_iso()
        if rt.key == K_JOBS:
            _job_selector(body)
        self._validate(rt, body, None)
        await self.admission.validate(rt, ns, "CREATE", body, None, ctx)
        # ---- commit (synchronous from here: atomic with respect to other requests)
        if self.store.get(rt.key, ns, name) is not None:
            raise already_exists(rt.plural, rt.group, name)
        self.check_namespace(rt, ns, name, True)
        self.admission.quota_check(rt, ns, "CREATE", body, None, ctx)
        meta = body["metadata"]
        if rt.is_custom or "spec" in body or rt.key == K_CRD:
            meta["generation"] = 1
        if rt.key == K_CRD:
            body["status"] = _crd_status(body)
        if ctx.dry_run:
            meta["resourceVersion"] = ""
            return body
        self.store.put(rt.key, body)
        self.stats.creates[rt.plural] += 1
        self.stats.created_names[f"{rt.plural}/{ns}/{name}" if ns else f"{rt.plural}/{name}"] += 1
        self._after_write(rt, body, None)
        return body

    def _escalation_check(self, rt: ResourceType, ns: str, body: Obj, ctx: Ctx) -> None:
        """RBAC's escalation prevention: you can only grant what you hold (or need escalate/bind)."""
        user = ctx.user
        if user.is_master:
            return
        if rt.plural in ("roles", "clusterroles"):
            ok, _ = self.authz.authorize(user, Attributes("escalate", rt.group, rt.plural, "", ns,
                                                          body["metadata"].get("name", "")))
            if ok:
                return
            missing = self.authz.covers(user, ns, list(body.get("rules") or []))
        else:
            rr = body.get("roleRef") or {}
            kind_plural = "clusterroles" if rr.get("kind") == "ClusterRole" else "roles"
            ok, _ = self.authz.authorize(user, Attributes("bind", rt.group, kind_plural, "", ns, rr.get("name", "")))
            if ok:
                return
            if rr.get("kind") == "ClusterRole":
                role = self.store.get(K_CROLES, "", rr.get("name", ""))
            else:
                role = self.store.get(K_ROLES, ns, rr.get("name", ""))
            if role is None:
                raise not_found(kind_plural, "rbac.authorization.k8s.io", rr.get("name", ""))
            missing = self.authz.covers(user, ns, list(role.get("rules") or []))
        if missing:
            groups = json.dumps(user.groups).replace(",", ", ")
            rules = "\n".join(format_rule(r) for r in missing)
            raise forbidden(rt.plural, rt.group, body["metadata"].get("name", ""),
                            f'user "{user.username}" (groups={groups}) is attempting to grant RBAC permissions '
                            f"not currently held:\n{rules}")

    # ================================================================= update
    async def update(self, rt: ResourceType, ns: str, name: str, body: Any, ctx: Ctx | None = None,
                     sub: str = "") -> Obj:
        ctx = ctx or Ctx()
        if not isinstance(body, dict):
            raise ApiError(400, "the object provided is unrecognized (must be of type object)", "BadRequest")
        self.authorize(ctx, "update", rt, ns, name, sub)
        body = copy.deepcopy(body)
        self._check_kind(rt, body)
        meta = body.get("metadata") or {}
        if meta.get("name") and meta["name"] != name:
            raise ApiError(400, f"the name of the object ({meta['name']}) does not match the name on the URL "
                                f"({name})", "BadRequest")
        if rt.namespaced and meta.get("namespace") and meta["namespace"] != ns:
            raise ApiError(400, "the namespace of the provided object does not match the namespace sent on the "
                                "request", "BadRequest")
        self._field_validation(rt, body, ctx)
        for _attempt in range(10):
            old = self.store.get(rt.key, ns, name)
            if old is None:
                raise not_found(rt.plural, rt.group, name)
            want_rv = (body.get("metadata") or {}).get("resourceVersion")
            if want_rv and want_rv != old["metadata"]["resourceVersion"]:
                raise conflict(rt.plural, rt.group, name)
            new, changed = await self._update_pipeline(rt, ns, name, old, copy.deepcopy(body), ctx, sub)
            cur = self.store.get(rt.key, ns, name)
            if cur is None:
                raise not_found(rt.plural, rt.group, name)
            if cur["metadata"]["resourceVersion"] != old["metadata"]["resourceVersion"]:
                if want_rv:
                    raise conflict(rt.plural, rt.group, name)
                continue  # unconditional update raced a writer: redo against the new state
            return self._commit_update(rt, ns, name, old, new, changed, ctx)
        raise conflict(rt.plural, rt.group, name)

    async def patch(self, rt: ResourceType, ns: str, name: str, patch_body: Any, content_type: str,
                    ctx: Ctx | None = None, sub: str = "") -> Obj:
        ctx = ctx or Ctx()
        self.authorize(ctx, "patch", rt, ns, name, sub)
        ct = content_type.split(";")[0].strip()
        if ct == "application/strategic-merge-patch+json" and rt.is_custom:
            raise ApiError(415, 'the body of the request was in an unknown format - accepted media types '
                                'include: application/json-patch+json, application/merge-patch+json, '
                                'application/apply-patch+yaml, application/apply-patch+cbor', "UnsupportedMediaType")
        for _attempt in range(10):
            old = self.store.get(rt.key, ns, name)
            if old is None:
                raise not_found(rt.plural, rt.group, name)
            base = copy.deepcopy(old)
            if ct == "application/json-patch+json":
                new_body = json_patch(base, patch_body)
            elif ct in ("application/merge-patch+json", "application/apply-patch+yaml",
                        "application/apply-patch+json"):
                if not isinstance(patch_body, dict):
                    raise ApiError(400, "the body of the request must be a JSON object", "BadRequest")
                if ct.startswith("application/apply-patch"):
                    if not ctx.field_manager:
                        raise ApiError(400, "PATCH, application/apply-patch+yaml requests must include the "
                                            "fieldManager query parameter", "BadRequest")
                    patch_body = {k: v for k, v in patch_body.items()}
                    (patch_body.get("metadata") or {}).pop("resourceVersion", None)
                new_body = merge_patch(base, patch_body)
            elif ct == "application/strategic-merge-patch+json":
                if not isinstance(patch_body, dict):
                    raise ApiError(400, "the body of the request must be a JSON object", "BadRequest")
                new_body = strategic_merge_patch(base, patch_body, bs.schema_for(rt.group, rt.version, rt.kind))
            else:
                raise ApiError(415, 'the body of the request was in an unknown format - accepted media types '
                                    'include: application/json-patch+json, application/merge-patch+json, '
                                    'application/apply-patch+yaml, application/strategic-merge-patch+json',
                               "UnsupportedMediaType")
            if not isinstance(new_body, dict):
                raise ApiError(400, "the patch produced a non-object", "BadRequest")
            nm = new_body.get("metadata") or {}
            if nm.get("name", name) != name:
                raise ApiError(400, f"the name of the object ({nm.get('name')}) does not match the name on the "
                                    f"URL ({name})", "BadRequest")
            want_rv = nm.get("resourceVersion")
            if want_rv and want_rv != old["metadata"]["resourceVersion"]:
                raise conflict(rt.plural, rt.group, name)
            if isinstance(patch_body, dict):
                self._field_validation(rt, merge_patch({"apiVersion": rt.api_version, "kind": rt.kind,
                                                        "metadata": {}}, _strip_directives(patch_body)), ctx)
            new, changed = await self._update_pipeline(rt, ns, name, old, new_body, ctx, sub)
            cur = self.store.get(rt.key, ns, name)
            if cur is None:
                raise not_found(rt.plural, rt.group, name)
            if cur["metadata"]["resourceVersion"] != old["metadata"]["resourceVersion"]:
                continue  # patches are retried against the fresh object, as real
            return self._commit_update(rt, ns, name, old, new, changed, ctx)
        raise conflict(rt.plural, rt.group, name)

    async def _update_pipeline(self, rt: ResourceType, ns: str, name: str, old: Obj, new: Obj, ctx: Ctx,
                               sub: str) -> tuple[Obj, bool]:
        self._check_kind(rt, new)
        meta = new.setdefault("metadata", {})
        ometa = old["metadata"]
        # System-owned metadata is carried over from the stored object.
        for f in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation",
                  "selfLink"):
            if f in ometa:
                meta[f] = ometa[f]
            else:
                meta.pop(f, None)
        meta["name"] = name
        if rt.namespaced:
            meta["namespace"] = ns
        meta["resourceVersion"] = ometa["resourceVersion"]
        if sub == "status":
            # /status writes change only .status (metadata and spec come from the stored object).
            st = new.get("status")
            new = copy.deepcopy(old)
            if st is None:
                new.pop("status", None)
            else:
                new["status"] = st
            if rt.key == K_NS:
                pass
        elif sub == "finalize" and rt.key == K_NS:
            fin = (new.get("spec") or {}).get("finalizers")
            new = copy.deepcopy(old)
            new.setdefault("spec", {})["finalizers"] = fin or []
        elif rt.has_status:
            # Writes to the main resource ignore .status.
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        if ometa.get("deletionTimestamp"):
            added = set(meta.get("finalizers") or []) - set(ometa.get("finalizers") or [])
            if added:
                raise invalid(rt.kind, rt.group, name, [FieldError(
                    "metadata.finalizers", "Forbidden", "no new finalizers can be added if the object is being "
                    "deleted, found new finalizers " + json.dumps(sorted(added)))])
        if rt.is_custom:
            new = self._prepare_cr(rt, new)
        elif sub == "":
            new = builtins.default_object(rt.key, new)
        if rt.key == K_CRD and sub == "":
            new = schema.default_crd(new)
        if rt.key[0] == "rbac.authorization.k8s.io" and new != old:
            self._escalation_check(rt, ns, new, ctx)
        new = await self.admission.mutate(rt, ns, "UPDATE", new, old, ctx, sub)
        if rt.is_custom:
            new = self._prepare_cr(rt, new)
        self._validate(rt, new, old, sub)
        await self.admission.validate(rt, ns, "UPDATE", new, old, ctx, sub)
        changed = _strip_rv(new) != _strip_rv(old)
        if changed and sub == "" and "generation" in ometa and _spec_changed(rt, old, new):
            new["metadata"]["generation"] = int(ometa.get("generation", 1)) + 1
        return new, changed

    def _commit_update(self, rt: ResourceType, ns: str, name: str, old: Obj, new: Obj, changed: bool,
                       ctx: Ctx) -> Obj:
        if ctx.dry_run or not changed:
            # A no-op update does not write (no new resourceVersion, no watch event), as real.
            return old if not changed else new
        self.admission.quota_check(rt, ns, "UPDATE", new, old, ctx)
        self.store.put(rt.key, new)
        self._after_write(rt, new, old)
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers") and \
                not _graceful_pending(rt, new):
            self.store.remove(rt.key, ns, name)
            self._after_delete(rt, new)
        elif rt.key == K_NS and new["metadata"].get("deletionTimestamp") and not (new.get("spec") or {}).get(
                "finalizers") and not new["metadata"].get("finalizers"):
            self.store.remove(rt.key, ns, name)
        return new

    # ================================================================= delete
    async def delete(self, rt: ResourceType, ns: str, name: str, options: Obj | None = None,
                     ctx: Ctx | None = None) -> Obj:
        ctx = ctx or Ctx()
        options = options or {}
        self.authorize(ctx, "delete", rt, ns, name)
        old = self.store.get(rt.key, ns, name)
        if old is None:
            raise not_found(rt.plural, rt.group, name)
        pre = options.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != old["metadata"]["uid"]:
            raise conflict(rt.plural, rt.group, name, f"Precondition failed: UID in precondition: {pre['uid']}, "
                                                      f"UID in object meta: {old['metadata']['uid']}")
        if pre.get("resourceVersion") and pre["resourceVersion"] != old["metadata"]["resourceVersion"]:
            raise conflict(rt.plural, rt.group, name,
                           f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, "
                           f"ResourceVersion in object meta: {old['metadata']['resourceVersion']}")
        await self.admission.validate(rt, ns, "DELETE", None, old, ctx)
        old = self.store.get(rt.key, ns, name)
        if old is None:
            raise not_found(rt.plural, rt.group, name)
        if ctx.dry_run:
            return old
        policy = options.get("propagationPolicy")
        if policy is None and options.get("orphanDependents") is not None:
            policy = "Orphan" if options["orphanDependents"] else "Background"
        if policy is None:
            if rt.key == K_JOBS:
                # batch/v1 keeps the legacy default: the Job's pods are orphaned.
                policy = "Orphan"
                ctx.warnings.append("child pods are preserved by default when jobs are deleted; set "
                                    "propagationPolicy=Background to remove them or set propagationPolicy=Orphan "
                                    "to suppress this warning")
            else:
                policy = "Background"
        if policy not in ("Orphan", "Background", "Foreground"):
            raise invalid("DeleteOptions", "", "", [FieldError("propagationPolicy", "Unsupported value",
                          'supported values: "Foreground", "Background", "Orphan", "nil"', policy, True)])
        meta = old["metadata"]
        if rt.key == K_NS:
            return self._delete_namespace(old)
        new = copy.deepcopy(old)
        nmeta = new["metadata"]
        fins = list(nmeta.get("finalizers") or [])
        has_dependents = bool(self.store.by_owner.get(meta["uid"]))
        if policy == "Orphan" and has_dependents and "orphan" not in fins:
            fins.append("orphan")
        if policy == "Foreground" and has_dependents and "foregroundDeletion" not in fins:
            fins.append("foregroundDeletion")
        grace = options.get("gracePeriodSeconds")
        graceful = (rt.key == K_PODS and (old.get("spec") or {}).get("nodeName")
                    and (old.get("status") or {}).get("phase") not in ("Succeeded", "Failed") and grace != 0)
        if not fins and not graceful:
            self.store.remove(rt.key, ns, name)
            self._after_delete(rt, old)
            return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                    "details": {"name": name, "group": rt.group, "kind": rt.plural, "uid": meta["uid"]}}
        if meta.get("deletionTimestamp") and fins == list(meta.get("finalizers") or []):
            return old
        nmeta["finalizers"] = fins
        if not nmeta.get("deletionTimestamp"):
            if graceful:
                g = int(grace if grace is not None else (old.get("spec") or {}).get("terminationGracePeriodSeconds",
                                                                                  30))
                nmeta["deletionTimestamp"] = datetime.fromtimestamp(time.time() + g, UTC).strftime(
                    "%Y-%m-%dT%H:%M:%SZ")
                nmeta["deletionGracePeriodSeconds"] = g
            else:
                nmeta["deletionTimestamp"] = now_iso()
                nmeta["deletionGracePeriodSeconds"] = 0
        if not fins:
            nmeta.pop("finalizers", None)
        self.store.put(rt.key, new)
        self._after_write(rt, new, old)
        return new

    def _delete_namespace(self, old: Obj) -> Obj:
        if old["metadata"].get("deletionTimestamp"):
            return old
        new = copy.deepcopy(old)
        new["metadata"]["deletionTimestamp"] = now_iso()
        new["metadata"]["deletionGracePeriodSeconds"] = 0
        new.setdefault("status", {})["phase"] = "Terminating"
        self.store.put(K_NS, new)
        return new

    def force_remove(self, key: Key, ns: str, name: str) -> None:
        """Remove an object now (kubelet's final delete of a terminated pod, GC finishing)."""
        obj = self.store.get(key, ns, name)
        if obj is None:
            return
        self.store.remove(key, ns, name)
        rt = self.registry.for_key(key)
        if rt is not None:
            self._after_delete(rt, obj)

    async def delete_collection(self, rt: ResourceType, ns: str | None, params: dict[str, str],
                                options: Obj | None, ctx: Ctx) -> Obj:
        self.authorize(ctx, "deletecollection", rt, ns or "", "")
        items = self.select(rt, ns, params.get("labelSelector"), params.get("fieldSelector"))
        out = []
        for o in items:
            m = o["metadata"]
            try:
                r = await self.delete(rt, m.get("namespace", ""), m["name"], options, ctx)
                out.append(r if r.get("kind") != "Status" else o)
            except ApiError as e:
                if e.code != 404:
                    raise
        return {"apiVersion": rt.api_version, "kind": rt.list_kind,
                "metadata": {"resourceVersion": str(self.store.rv)}, "items": out}

    # =================================================================== reads
    def get(self, rt: ResourceType, ns: str, name: str, ctx: Ctx | None = None, sub: str = "") -> Obj:
        if ctx is not None:
            self.authorize(ctx, "get", rt, ns, name, sub)
        o = self.store.get(rt.key, ns, name)
        if o is None:
            raise not_found(rt.plural, rt.group, name)
        return self.view(rt, o)

    def view(self, rt: ResourceType, o: Obj) -> Obj:
        """The object as served at ``rt``'s version (CRD conversion strategy None)."""
        if o.get("apiVersion") != rt.api_version:
            o = dict(o)
            o["apiVersion"] = rt.api_version
        return o

    def select(self, rt: ResourceType, ns: str | None, label_selector: str | None,
               field_selector: str | None) -> list[Obj]:
        reqs = parse_label_selector(label_selector)
        fmatch = parse_field_selector(field_selector, rt.key, _selectable_fields(rt))
        out = []
        for o in self.store.list_sorted(rt.key, ns):
            if reqs and not labels_match(reqs, o["metadata"].get("labels")):
                continue
            if fmatch is not None and not fmatch(o):
                continue
            out.append(o)
        return out

    def list(self, rt: ResourceType, ns: str | None, params: dict[str, str], ctx: Ctx | None = None) -> Obj:
        if ctx is not None:
            self.authorize(ctx, "list", rt, ns or "", "")
        items = self.select(rt, ns, params.get("labelSelector"), params.get("fieldSelector"))
        meta: Obj = {"resourceVersion": str(self.store.rv)}
        cont = params.get("continue")
        if cont:
            try:
                tok = json.loads(base64.b64decode(cont))
                start = tok["start"]
            except (ValueError, KeyError) as e:
                raise ApiError(400, f"continue key is not valid: {e}", "BadRequest") from e
            if int(tok.get("rv", 0)) < self.store._evicted.get(rt.key, 0):
                raise ApiError(410, "The provided continue parameter is too old to display a consistent list "
                                    "result. You can start a new list without the continue parameter, or use the "
                                    "continue token in this response to retrieve the remainder of the results. "
                                    "Continuing with the provided token results in an inconsistent list - objects "
                                    "that were created, modified, or deleted between the time the first chunk was "
                                    "returned and now may show up in the list.", "Expired")
            items = [o for o in items if _sort_key(o) > start]
            meta["resourceVersion"] = str(tok.get("rv", self.store.rv))
        limit = int(params.get("limit") or 0)
        if limit > 0 and len(items) > limit:
            rest = len(items) - limit
            items = items[:limit]
            meta["continue"] = base64.b64encode(json.dumps(
                {"rv": int(meta["resourceVersion"]), "start": _sort_key(items[-1])}).encode()).decode()
            meta["remainingItemCount"] = rest
        if rt.is_custom:
            items = [self.view(rt, o) for o in items]
        return {"apiVersion": rt.api_version, "kind": rt.list_kind, "metadata": meta, "items": items}

    # =============================================================== side effects
    def _after_write(self, rt: ResourceType, obj: Obj, old: Obj | None) -> None:
        if rt.key == K_CRD:
            self._crd_changed(obj)
        if rt.key == K_NS and old is None:
            self._ensure_default_sa(obj["metadata"]["name"])

    def _after_delete(self, rt: ResourceType, obj: Obj) -> None:
        if rt.key == K_CRD:
            self.registry.unregister_crd(obj["metadata"]["name"])
            spec = obj.get("spec") or {}
            key = (spec.get("group", ""), (spec.get("names") or {}).get("plural", ""))
            # Deleting a CRD deletes all its custom resources.
            for o in list(self.store.iter(key)):
                self.store.remove(key, o["metadata"].get("namespace", ""), o["metadata"]["name"])
            self.store.close_watchers(key)

    def _crd_changed(self, crd: Obj) -> None:
        if crd["metadata"].get("deletionTimestamp"):
            return
        self.registry.register_crd(crd)

    def _ensure_default_sa(self, ns: str) -> None:
        if self.store.get(K_SA, ns, "default") is None:
            self.store.put(K_SA, {"apiVersion": "v1", "kind": "ServiceAccount",
                                  "metadata": {"name": "default", "namespace": ns, "uid": str(uuid.uuid4()),
                                               "creationTimestamp": now_iso()}})

    def seed(self, key: Key, obj: Obj) -> Obj:
        """Store a bootstrap object directly (no admission)."""
        obj = copy.deepcopy(obj)
        meta = obj["metadata"]
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", now_iso())
        rt = self.rt_for(key)
        if not rt.is_custom:
            obj = builtins.default_object(key, obj)
        if rt.has_status and "status" not in obj:
            st = builtins.initial_status(key, obj)
            if st is not None:
                obj["status"] = st
        self.store.put(key, obj)
        self._after_write(rt, obj, None)
        return obj

    # ================================================================== events
    @staticmethod
    def _event_key(e: Obj) -> tuple[str, Any, Any, Any]:
        io = e.get("involvedObject") or {}
        return (e["metadata"].get("namespace", ""), io.get("uid"), e.get("reason"), e.get("message"))

    def _index_event(self, ev: Any) -> None:
        if ev.key != K_EVENTS:
            return
        if ev.old is not None:
            old_key = self._event_key(ev.old)
            if ev.type == "DELETED" or old_key != self._event_key(ev.obj):
                names = self._event_index.get(old_key)
                if names is not None:
                    names.pop(ev.name, None)
                    if not names:
                        del self._event_index[old_key]
        if ev.type != "DELETED":
            self._event_index.setdefault(self._event_key(ev.obj), {})[ev.name] = None

    def _find_event(self, ns: str, uid: Any, reason: str, message: str) -> Obj | None:
        """The first Event (in store order) about ``uid`` with this reason and message."""
        names = self._event_index.get((ns, uid, reason, message))
        if not names:
            return None
        found = [e for n in names if (e := self.store.get(K_EVENTS, ns, n)) is not None]
        if len(found) > 1:  # several matches (clients can create look-alikes): keep store order
            order = {id(e): i for i, e in enumerate(self.store.iter(K_EVENTS, ns))}
            found.sort(key=lambda e: order.get(id(e), 0))
        return found[0] if found else None

    def record_event(self, involved: Obj, type_: str, reason: str, message: str, component: str) -> None:
        """Record (or bump the count of) a core/v1 Event like client-go's recorder."""
        meta = involved["metadata"]
        ns = meta.get("namespace") or "default"
        if self.store.get(K_NS, "", ns) is None:
            return
        e = self._find_event(ns, meta.get("uid"), reason, message)
        if e is not None:
            ne = copy.deepcopy(e)
            ne["count"] = int(e.get("count", 1)) + 1
            ne["lastTimestamp"] = now_iso()
            self.store.put(K_EVENTS, ne)
            return
        ts = now_iso()
        self.seed(K_EVENTS, {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}", "namespace": ns},
            "involvedObject": {"kind": involved.get("kind"), "namespace": meta.get("namespace"),
                               "name": meta["name"], "uid": meta.get("uid"),
                               "apiVersion": involved.get("apiVersion"),
                               "resourceVersion": meta.get("resourceVersion")},
            "reason": reason, "message": message, "type": type_, "count": 1,
            "source": {"component": component}, "firstTimestamp": ts, "lastTimestamp": ts,
            "reportingComponent": component, "reportingInstance": "",
        })


# ====================================================================== utils

def forbidden_error(user: UserInfo, verb: str, group: str, resource: str, sub: str, ns: str, name: str) -> ApiError:
    res = f"{resource}/{sub}" if sub else resource
    if ns:
        why = f'User "{user.username}" cannot {verb} resource "{res}" in API group "{group}" in the namespace "{ns}"'
    else:
        why = f'User "{user.username}" cannot {verb} resource "{res}" in API group "{group}" at the cluster scope'
    return forbidden(resource, group, name, why)


def _strip_rv(o: Obj) -> Obj:
    m = dict(o.get("metadata") or {})
    m.pop("resourceVersion", None)
    m.pop("managedFields", None)
    out = dict(o)
    out["metadata"] = m
    return out


def _spec_changed(rt: ResourceType, old: Obj, new: Obj) -> bool:
    a = {k: v for k, v in old.items() if k not in ("metadata", "status")}
    b = {k: v for k, v in new.items() if k not in ("metadata", "status")}
    if not rt.has_status and old.get("status") != new.get("status"):
        return True
    return a != b


def _strip_directives(p: Obj) -> Obj:
    out: Obj = {}
    for k, v in p.items():
        if k.startswith("$"):
            continue
        if isinstance(v, dict):
            out[k] = _strip_directives(v)
        elif isinstance(v, list):
            out[k] = [_strip_directives(x) if isinstance(x, dict) else x for x in v]
        else:
            out[k] = v
    return out


def _graceful_pending(rt: ResourceType, obj: Obj) -> bool:
    return bool(rt.key == K_PODS and (obj.get("metadata") or {}).get("deletionGracePeriodSeconds")
                and (obj.get("status") or {}).get("phase") not in ("Succeeded", "Failed"))


def _sort_key(o: Obj) -> str:
    m = o["metadata"]
    return f"{m.get('namespace', '')}/{m['name']}"


def _selectable_fields(rt: ResourceType) -> tuple[str, ...]:
    if rt.crd_version is None:
        return ()
    return tuple(str(f.get("jsonPath", "")).lstrip(".") for f in rt.crd_version.get("selectableFields") or ())


def _job_selector(job: Obj) -> None:
    """The Job strategy's ``generateSelector`` (unless ``manualSelector``); conflicts fail validation."""
    uid = job["metadata"]["uid"]
    name = job["metadata"]["name"]
    spec = job.setdefault("spec", {})
    if spec.get("manualSelector"):
        return
    tmpl = spec.setdefault("template", {})
    tmeta = tmpl.get("metadata")
    if not isinstance(tmeta, dict):
        tmeta = tmpl["metadata"] = {}
    labels = tmeta.get("labels")
    if not isinstance(labels, dict):
        labels = tmeta["labels"] = {}
    for k, v in (("batch.kubernetes.io/controller-uid", uid), ("batch.kubernetes.io/job-name", name),
                 ("controller-uid", uid), ("job-name", name)):
        labels.setdefault(k, v)
    sel = spec.get("selector")
    if not isinstance(sel, dict):
        sel = spec["selector"] = {}
    ml = sel.get("matchLabels")
    if not isinstance(ml, dict):
        ml = sel["matchLabels"] = {}
    ml.setdefault("batch.kubernetes.io/controller-uid", uid)


def _crd_status(crd: Obj) -> Obj:
    ts = now_iso()
    names = dict(crd["spec"]["names"])
    storage = [v["name"] for v in crd["spec"].get("versions") or () if v.get("storage")]
    return {
        "acceptedNames": names,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
             "message": "no conflicts found", "lastTransitionTime": ts},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted", "lastTransitionTime": ts},
        ],
        "storedVersions": storage,
    }
