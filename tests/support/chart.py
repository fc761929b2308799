"""The chart (``helm/network-mapper``) rendered offline with the Helm SDK (``helm_python``), for the
tests that read its manifests: release :data:`RELEASE` in :data:`NS` unless a test names another.

* :func:`rendered`: values → the manifests (parsed, NOTES apart) and the NOTES text.
* :func:`documents`: a render's files → its manifests (for tests that keep the files too).
* :func:`find`, :func:`env`: one object by kind and name; a container's environment.
* :func:`merged`: values with overrides merged in deeply (the base left alone).

The sandbox renders the chart its own way (:func:`sandbox.chartrun.render`: as installed, hooks
apart); tests of what the sandbox runs use that.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

CHART = Path(__file__).resolve().parents[2] / "helm" / "network-mapper"
RELEASE = "nm"
NS = "observability"
NOTES = "NOTES.txt"

Manifest = dict[str, Any]


def documents(files: dict[str, str]) -> list[Manifest]:
    """The manifests of a render (``{template path: text}``), in the SDK's order; NOTES left out."""
    return [
        doc
        for path, text in files.items()
        if not path.endswith(NOTES)
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def rendered(values: dict[str, Any], name: str = RELEASE, namespace: str = NS) -> tuple[list[Manifest], str]:
    """The manifests and the NOTES of release ``name`` in ``namespace`` for ``values``."""
    files = helm.Chart.load(CHART).render(values, name=name, namespace=namespace)
    notes = "".join(text for path, text in files.items() if path.endswith(NOTES))
    return documents(files), notes


def find(docs: list[Manifest], kind: str, name: str) -> Manifest:
    """The one rendered ``kind`` named ``name`` (fails unless there is exactly one)."""
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} rendered"
    return matches[0]


def env(container: Manifest) -> dict[str, Any]:
    """A container's environment: name → value, or its ``valueFrom`` for those set from elsewhere."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` merged in: mappings key by key at every depth, anything else replaced."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and key in out else value
    return out
