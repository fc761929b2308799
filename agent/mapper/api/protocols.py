"""What the API needs from the rest of the mapper, as structural types.

The API does not import the store, the resolver or the cluster state: the mapper's
``__main__`` hands the real objects to :func:`agent.mapper.api.create_app`, and tests hand in
small stand-ins. Data flows producers → (HTTP) → API → :class:`ObservationResolver` →
:class:`EdgeSink`; queries read an :class:`EdgeSource` and decorate identities with a
:class:`LabelSource`; ``clusterFacts`` reads a :class:`FactsSource`, the snapshot fields a
:class:`SnapshotKeeper`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import TYPE_CHECKING, Protocol

from agent.model import ClusterFacts, Edge, Observation, Snapshot, WorkloadIdentity

if TYPE_CHECKING:  # the type only: the API does not import the store
    from agent.mapper.snapshots import SnapshotInfo


class EdgeSink(Protocol):
    """Where resolved edges go (``agent.mapper.store.EdgeStore``): one call per report batch."""

    def record(self, edges: Iterable[Edge]) -> int: ...


class EdgeSource(Protocol):
    """Where queries read edges from (``agent.mapper.store.EdgeStore``).

    ``namespaces`` filters by the client's namespace; None means every edge.
    """

    def edges(self, namespaces: Collection[str] | None = None) -> list[Edge]: ...

    def reset(self) -> None: ...


class EdgeStoreLike(EdgeSink, EdgeSource, Protocol):
    """Both sides of the store, as :func:`~agent.mapper.api.create_app` takes it."""


class ObservationResolver(Protocol):
    """Turns one observation into edges using cluster state (``agent.mapper.resolver.Resolver``).

    Pure: no I/O. An observation that cannot be attributed yields no edges.
    """

    def resolve(self, obs: Observation) -> list[Edge]: ...


class LabelSource(Protocol):
    """The labels of a workload's pods (``agent.mapper.cluster``); empty when unknown."""

    def labels_of(self, identity: WorkloadIdentity) -> Mapping[str, str]: ...


class NoLabels:
    """A :class:`LabelSource` that knows no labels (when the mapper runs without cluster state)."""

    def labels_of(self, identity: WorkloadIdentity) -> Mapping[str, str]:
        return {}


class FactsSource(Protocol):
    """The cluster as policies see it (``agent.mapper.cluster.ClusterState.facts``)."""

    def facts(self) -> ClusterFacts: ...


class SnapshotKeeper(Protocol):
    """Snapshots of the map (``agent.mapper.snapshots.SnapshotStore``). Saving raises ValueError
    (its message for the user) on a bad or reserved name or a snapshot that cannot be written."""

    def save_snapshot(self, snapshot: Snapshot) -> SnapshotInfo: ...

    def take(self, name: str, facts: ClusterFacts, now: float, *, auto: bool = False) -> SnapshotInfo: ...

    def document(self, name: str) -> bytes | None: ...

    def snapshot_infos(self) -> list[SnapshotInfo]: ...

    def delete_snapshot(self, name: str) -> bool: ...
