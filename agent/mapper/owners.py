"""The ownership tree (Pod → ReplicaSet → Deployment, Pod → Job → CronJob ...): whose is a pod.

Owner events (ReplicaSet, Deployment, StatefulSet, DaemonSet, Job, CronJob) and pods' controller
references come in from `agent.mapper.cluster.ClusterState`'s writer (already read by
`agent.mapper.kuberecords`); out go a pod's root owner (`root`, for its workload identity), the pods
below an owner that changed (`pods_below`, to re-resolve them), and the kind of a root owner by
name (`root_kind`). Pure, and written only under the state's lock; `root_kind` is a single dict
read and safe without it.

An owner seen before its own owner is a root until the chain completes: a pod is named after the
deepest owner reference known so far. Deleted owners are kept (see `apply`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from agent.mapper.kuberecords import Change, OwnerRef, controller

MAX_DEPTH = 10  # ownership chains are 2-3 deep; this only guards against cycles


class OwnerTree:
    def __init__(self) -> None:
        self._refs: dict[str, OwnerRef | None] = {}  # owner uid → its own controller
        self._pod_refs: dict[str, OwnerRef | None] = {}  # pod uid → its controller
        self._children: dict[str, set[str]] = {}  # owner uid → uids of pods and owners it owns
        self._root_kinds: dict[tuple[str, str], str] = {}  # (ns, name) of root owners → kind

    def __len__(self) -> int:
        return len(self._refs)

    def set_pod(self, uid: str, ref: OwnerRef | None) -> None:
        self._pod_refs[uid] = ref
        if ref is not None:
            self._children.setdefault(ref[2], set()).add(uid)

    def pod_ref(self, uid: str) -> OwnerRef | None:
        return self._pod_refs.get(uid)

    def forget_pod(self, uid: str) -> None:
        """A pruned pod: drop its reference and its place under its owner."""
        ref = self._pod_refs.pop(uid, None)
        if ref is not None and ref[2] in self._children:
            self._children[ref[2]].discard(uid)

    def apply(self, kind: str, c: Change) -> bool:
        """One owner event; True if it changed the tree (then the pods below `c.uid` may be renamed)."""
        if c.deleted:
            # Kept: pods of a deleted ReplicaSet (a finished rollout) are still its Deployment's
            # while they terminate, and their past traffic stays theirs.
            return False
        ref = controller(c.meta)
        known = c.uid in self._refs
        old = self._refs.get(c.uid)
        if known and old == ref:
            return False  # a status-only update: nothing identity-relevant changed
        self._refs[c.uid] = ref
        if ref is not None:
            self._children.setdefault(ref[2], set()).add(c.uid)
        else:
            self._root_kinds[(c.ns, c.name)] = kind
        return True

    def root(self, ref: OwnerRef | None) -> tuple[str, str] | None:
        """(kind, name) of the root owner reachable from `ref` (the deepest known), None if no owner."""
        found = None
        for _ in range(MAX_DEPTH):
            if ref is None:
                break
            found = (ref[0], ref[1])  # the deepest owner known so far, even if not (yet) watched
            ref = self._refs.get(ref[2])
        return found

    def pods_below(self, owner_uid: str, is_pod: Callable[[str], bool]) -> Iterator[str]:
        """The uids of the pods anywhere below `owner_uid` (`is_pod` tells pods from owners)."""
        stack, seen = [owner_uid], {owner_uid}
        while stack:
            for child in list(self._children.get(stack.pop(), ())):
                if child in seen:
                    continue
                seen.add(child)
                if is_pod(child):
                    yield child
                else:
                    stack.append(child)

    def root_kind(self, namespace: str, name: str) -> str:
        """The kind of the root owner named `namespace`/`name`, or ""."""
        return self._root_kinds.get((namespace, name), "")
