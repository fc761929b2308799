"""Which of the mapper's snapshots go to the cloud, and in what form.

Snapshots come from the mapper's snapshot store (:class:`agent.mapper.snapshots.SnapshotStore`:
``snapshot_infos()`` and each one's stored ``document(name)``); each one that is pending goes
through the uploader's client (:mod:`agent.mapper.uploader`, :mod:`agent.mapper.cloudclient`,
with its retries) to the cloud's ``POST /v1/snapshots``, and is marked in the
:class:`~agent.mapper.uploadledger.UploadLedger` by the digest of its document, so each snapshot
goes once, and again only when it was replaced under its name. Oldest first, so the cloud (which
prunes a cluster's oldest past its bound) keeps the newest. Marks of snapshots the mapper no
longer has are dropped.

Anonymized uploads (``cloud.anonymize``): the snapshot's edges are anonymized as the edge upload's
are (:meth:`agent.anonymize.Anonymizer.anonymize`, so a cloud diff against the anonymized graph
matches them), and its cluster facts are left out — labels, container port names, pod IPs and
node names and addresses have no keyed-hash form, and would name what the hashes hide. Said once
in the log.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from agent import snapshotwire
from agent.anonymize import Anonymizer
from agent.mapper.cloudclient import CloudRejected
from agent.mapper.uploadledger import UploadLedger
from agent.model import ClusterFacts

log = logging.getLogger("agent.mapper.snapshotupload")


class SnapshotInfoLike(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def taken_at(self) -> float: ...


class SnapshotSource(Protocol):
    """The mapper's snapshots, as :class:`agent.mapper.snapshots.SnapshotStore` offers them."""

    def snapshot_infos(self) -> Sequence[SnapshotInfoLike]:
        """Newest first."""
        ...

    def document(self, name: str) -> bytes | None:
        """The stored snapshot document's JSON (None: deleted meanwhile)."""
        ...


@dataclass(frozen=True, slots=True)
class PendingSnapshot:
    """A snapshot to upload: its name, the digest it is marked by once sent, and the body to send."""

    name: str
    digest: str
    body: bytes


def document_digest(document: bytes) -> str:
    """The mark of a snapshot document (16 hex digits of its sha256)."""
    return hashlib.sha256(document).hexdigest()[:16]


class SnapshotUploads:
    """The snapshots of ``source`` not yet uploaded (see the module docstring)."""

    def __init__(self, source: SnapshotSource, ledger: UploadLedger, anonymizer: Anonymizer | None) -> None:
        self.source, self.ledger, self.anonymizer = source, ledger, anonymizer
        self._said_facts_left_out = self._said_no_route = False

    def pending(self) -> Iterator[PendingSnapshot]:
        """Each snapshot whose current document was not uploaded, oldest first; forgets the marks
        of snapshots that are gone."""
        infos = list(self.source.snapshot_infos())
        self.ledger.keep_snapshot_marks(info.name for info in infos)
        marks = self.ledger.snapshot_marks()
        for info in sorted(infos, key=lambda i: (i.taken_at, i.name)):
            document = self.source.document(info.name)
            if document is None:  # deleted since it was listed
                continue
            digest = document_digest(document)
            if marks.get(info.name) != digest:
                yield PendingSnapshot(info.name, digest, self._body(document))

    def upload_all(self, send: Callable[[bytes], object], stopping: Callable[[], bool]) -> int:
        """``send`` each pending snapshot's body (retried by the caller while the cloud is
        unavailable) and mark it, until ``stopping``; the number marked. A snapshot the cloud
        refuses for good (too large, say: it would be refused again as it is) is marked too, with
        an error logged; a refused token raises :class:`CloudRejected` (the cycle fails, as an edge
        batch's would); a cloud without the route (404) stops this cycle's snapshots, said once."""
        marked = 0
        for snapshot in self.pending():
            if stopping():
                break
            try:
                send(snapshot.body)
            except CloudRejected as error:
                if error.status in (401, 403):
                    raise
                if error.status == 404:
                    if not self._said_no_route:
                        log.warning("the cloud takes no snapshots (%s); they stay queued", error)
                        self._said_no_route = True
                    break
                refused = f"the cloud refused snapshot {snapshot.name}: {error}; sent again only if replaced"
                log.error(refused)  # noqa: TRY400 - a refusal, not an error of ours: no traceback
            else:
                log.info("uploaded snapshot %s", snapshot.name)
            self.ledger.mark_snapshot(snapshot.name, snapshot.digest)
            marked += 1
        return marked

    def _body(self, document: bytes) -> bytes:
        if self.anonymizer is None:
            return document
        if not self._said_facts_left_out:
            log.info(
                "snapshots are uploaded with anonymized edges and without cluster facts (cloud.anonymize)"
            )
            self._said_facts_left_out = True
        snapshot = snapshotwire.decode_snapshot(document)
        edges = tuple(self.anonymizer.anonymize(edge) for edge in snapshot.edges)
        return snapshotwire.encode_snapshot(dataclasses.replace(snapshot, edges=edges, facts=ClusterFacts()))
