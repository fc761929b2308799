"""The Kubernetes types ``values.schema.json`` reuses (resources, tolerations, affinity), taken from
kubernetes-validate's strict schemas of its newest Kubernetes version and inlined as draft-07
``definitions`` (every object closed with ``additionalProperties: false``, as upstream's strict
variant has them). Descriptions are dropped to keep the chart small.

``python -m tests.unit.helm.k8s_definitions`` rewrites those definitions in the chart's schema;
``test_values_schema.py`` checks they are current.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate

from tests.support.chart import CHART

SCHEMA = CHART / "values.schema.json"
ROOTS = (
    "io.k8s.api.core.v1.ResourceRequirements",
    "io.k8s.api.core.v1.Toleration",
    "io.k8s.api.core.v1.Affinity",
)
PREFIX = "io.k8s."


def upstream() -> dict[str, Any]:
    """Every upstream definition, by name."""
    version = kubernetes_validate.latest_version()
    folder = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{version}-local-strict"
    defs: dict[str, Any] = json.loads((folder / "_definitions.json").read_text(encoding="utf-8"))["$defs"]
    return defs


def _rewrite(node: Any, found: set[str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "description" or key.startswith("x-kubernetes-"):
                continue
            if key == "$ref":
                name = value.rsplit("/", 1)[1]
                found.add(name)
                out[key] = f"#/definitions/{name}"
            else:
                out[key] = _rewrite(value, found)
        return out
    if isinstance(node, list):
        return [_rewrite(item, found) for item in node]
    return node


def definitions() -> dict[str, Any]:
    """The closure of :data:`ROOTS` under ``$ref``, refs pointing at ``#/definitions/``."""
    defs = upstream()
    out: dict[str, Any] = {}
    todo = list(ROOTS)
    while todo:
        name = todo.pop()
        if name in out:
            continue
        found: set[str] = set()
        out[name] = _rewrite(defs[name], found)
        todo.extend(sorted(found - set(out)))
    return dict(sorted(out.items()))


def main() -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    ours = {k: v for k, v in schema["definitions"].items() if not k.startswith(PREFIX)}
    schema["definitions"] = {**ours, **definitions()}
    SCHEMA.write_text(json.dumps(schema, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {SCHEMA} ({len(schema['definitions'])} definitions)", file=sys.stderr)


if __name__ == "__main__":
    main()
