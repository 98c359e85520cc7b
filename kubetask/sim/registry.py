"""The set of served resource types, including CRDs registered at runtime."""

from __future__ import annotations

from typing import Any

from kubetask.sim.resources import ResourceType, builtin_types

Obj = dict[str, Any]


class Registry:
    """Lookup of resource types by group/version/plural, by storage key and by kind."""

    def __init__(self) -> None:
        self.by_gvr: dict[tuple[str, str, str], ResourceType] = {}
        self.by_gvk: dict[tuple[str, str, str], ResourceType] = {}
        self.crds: dict[str, list[ResourceType]] = {}
        # Derived lookups, rebuilt lazily after any add/remove (they are on every request's path).
        self._groups: dict[str, list[str]] | None = None
        self._for_key: dict[tuple[str, str], ResourceType | None] = {}
        for rt in builtin_types():
            self.add(rt)

    def _changed(self) -> None:
        self._groups = None
        self._for_key = {}

    def add(self, rt: ResourceType) -> None:
        self._changed()
        self.by_gvr[(rt.group, rt.version, rt.plural)] = rt
        self.by_gvk[(rt.group, rt.version, rt.kind)] = rt

    def remove(self, rt: ResourceType) -> None:
        self._changed()
        self.by_gvr.pop((rt.group, rt.version, rt.plural), None)
        self.by_gvk.pop((rt.group, rt.version, rt.kind), None)

    def get(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self.by_gvr.get((group, version, plural))

    def for_key(self, key: tuple[str, str]) -> ResourceType | None:
        """The preferred (storage) version of a resource."""
        try:
            return self._for_key[key]
        except KeyError:
            pass
        found = self._find_for_key(key)
        self._for_key[key] = found
        return found

    def _find_for_key(self, key: tuple[str, str]) -> ResourceType | None:
        best = None
        for rt in self.by_gvr.values():
            if rt.key == key:
                if rt.crd_version is not None and rt.crd_version.get("storage"):
                    return rt
                best = best or rt
        return best

    def keys(self) -> set[tuple[str, str]]:
        return {rt.key for rt in self.by_gvr.values() if not rt.virtual}

    def groups(self) -> dict[str, list[str]]:
        """group -> served versions (preferred first). Callers must not mutate the result."""
        if self._groups is None:
            self._groups = self._build_groups()
        return self._groups

    def _build_groups(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for rt in self.by_gvr.values():
            vs = out.setdefault(rt.group, [])
            if rt.version not in vs:
                vs.append(rt.version)
        for g, vs in out.items():
            vs.sort(key=_version_priority)
            if g in self.crds or any(rt.crd_version is not None and rt.group == g for rt in self.by_gvr.values()):
                pass
        return out

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [rt for (g, v, _), rt in self.by_gvr.items() if g == group and v == version]

    def register_crd(self, crd: Obj) -> list[ResourceType]:
        """(Re)register the served versions of an established CRD."""
        name = crd["metadata"]["name"]
        self.unregister_crd(name)
        spec = crd["spec"]
        names = spec["names"]
        out = []
        for v in spec.get("versions") or ():
            if not v.get("served", True):
                continue
            sub = v.get("subresources") or {}
            subs: dict[str, list[str]] = {}
            if "status" in sub:
                subs["status"] = ["get", "patch", "update"]
            if "scale" in sub:
                subs["scale"] = ["get", "patch", "update"]
            rt = ResourceType(
                spec["group"], v["name"], names["plural"], names["kind"], spec.get("scope") == "Namespaced",
                singular=names.get("singular") or names["kind"].lower(),
                short_names=list(names.get("shortNames") or []), categories=list(names.get("categories") or []),
                subresources=subs, has_status="status" in sub, list_kind=names.get("listKind") or "",
                crd_version=v, crd_name=name,
            )
            self.add(rt)
            out.append(rt)
        self.crds[name] = out
        return out

    def unregister_crd(self, name: str) -> None:
        for rt in self.crds.pop(name, []):
            self.remove(rt)

    def find_plural(self, group: str, plural_or_alias: str) -> ResourceType | None:
        for rt in self.by_gvr.values():
            if rt.group == group and plural_or_alias in (rt.plural, rt.singular, *rt.short_names):
                return rt
        return None


def _version_priority(v: str) -> tuple[int, int, int]:
    """Kubernetes version ordering: GA > beta > alpha, higher numbers first."""
    import re

    m = re.match(r"^v(\d+)(?:(alpha|beta)(\d+))?$", v)
    if not m:
        return (3, 0, 0)
    major = int(m.group(1))
    stage = {"alpha": 2, "beta": 1, None: 0}[m.group(2)]
    minor = int(m.group(3) or 0)
    return (stage, -major, -minor)
