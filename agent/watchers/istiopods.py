"""Pods from the Kubernetes API → the Istio sidecars to scrape (pure: no I/O).

Where the data comes from: the Istio watcher lists pods labelled ``security.istio.io/tlsMode``
(the label Istio's injector puts on every pod with a sidecar) as JSON objects. Where it goes:
:class:`SidecarPod` tells the watcher where to scrape (``http://<podIP>:<port>/stats/prometheus``),
the counter tracker (:mod:`agent.watchers.istiodeltas`) when the sidecar started, and the
request filter (:func:`agent.watchers.istio.request_of`) which workloads have a sidecar of their
own (``meshed``).

A pod is scraped while it is ``Running`` with a pod IP and not on the host network (the injector
skips those; their IP is the node's). Its sidecar's start is the ``istio-proxy`` container's
``state.running.startedAt`` (a regular container, or a native sidecar among the init containers
since Istio 1.19), else the pod's ``status.startTime``. Its workload name is the one Istio's
sidecar puts in ``source_workload`` / ``destination_workload`` (Istio's
``GetWorkloadMetaFromPod``): the label ``service.istio.io/workload-name``, else for a generated
pod name the controller's name, the ReplicaSet's less its ``-<pod-template-hash>`` (the
Deployment), a Job's less a ``-<8 to 10 digits>`` suffix (the CronJob); else the pod's name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["SIDECAR_CONTAINER", "SIDECAR_LABEL", "SidecarPod", "istio_workload", "sidecar_pods"]

SIDECAR_LABEL = "security.istio.io/tlsMode"
SIDECAR_CONTAINER = "istio-proxy"
WORKLOAD_NAME_LABEL = "service.istio.io/workload-name"
_CRONJOB_JOB = re.compile(r"(.+)-\d{8,10}")


@dataclass(frozen=True, slots=True)
class SidecarPod:
    """A running pod with an Istio sidecar."""

    namespace: str
    name: str
    uid: str
    ip: str
    workload: str  # as Istio names it in its metrics' workload labels
    started_at: float | None  # epoch seconds the sidecar started; None: unknown


def _time(text: object) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _sidecar_started(status: Mapping[str, Any]) -> float | None:
    for statuses in (status.get("containerStatuses"), status.get("initContainerStatuses")):
        for container in statuses or ():
            if isinstance(container, Mapping) and container.get("name") == SIDECAR_CONTAINER:
                running = (container.get("state") or {}).get("running") or {}
                started = _time(running.get("startedAt"))
                if started is not None:
                    return started
    return _time(status.get("startTime"))


def istio_workload(meta: Mapping[str, Any]) -> str:
    """The workload name Istio's sidecar reports for a pod with this ``metadata``."""
    labels = meta.get("labels") or {}
    if labels.get(WORKLOAD_NAME_LABEL):
        return str(labels[WORKLOAD_NAME_LABEL])
    name = str(meta.get("name") or "")
    if not meta.get("generateName"):
        return name
    controller = next(
        (r for r in meta.get("ownerReferences") or () if isinstance(r, Mapping) and r.get("controller")), None
    )
    if controller is None:
        return name
    owner, kind = str(controller.get("name") or ""), controller.get("kind")
    template_hash = str(labels.get("pod-template-hash") or "")
    if kind == "ReplicaSet" and template_hash and owner.endswith(template_hash):
        return owner.removesuffix("-" + template_hash)
    if kind == "Job":
        job = _CRONJOB_JOB.fullmatch(str(labels.get("job-name") or ""))
        if job:
            return job.group(1)
    return owner or name


def sidecar_pods(items: Iterable[Mapping[str, Any]]) -> list[SidecarPod]:
    """The pods of a pod list (JSON objects) whose sidecar can be scraped now."""
    found = []
    for pod in items:
        meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
        ip, uid = status.get("podIP"), meta.get("uid")
        if status.get("phase") != "Running" or not ip or not uid or spec.get("hostNetwork"):
            continue
        found.append(
            SidecarPod(
                str(meta.get("namespace") or ""),
                str(meta.get("name") or ""),
                str(uid),
                str(ip),
                istio_workload(meta),
                _sidecar_started(status),
            )
        )
    return found
