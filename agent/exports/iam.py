"""Edges → AWS IAM policy documents: one per client workload that called AWS.

Data comes from the store's edges (``agent.model.Edge``) whose target is an ``AwsTarget``
(filled by the IAM proxy's reports); the policies go to the CLI, the mapper's API and the
cloud's export handler (``format=iam``). Pure: no I/O.

Rules:

* one policy per client workload with at least one AWS action, sorted by (namespace, name,
  kind); clients without AWS edges, and AWS edges without actions, give nothing (an
  ``Allow`` statement needs an action);
* one ``Allow`` statement per resource (the edge's ARN, or ``*`` when the action has no
  resource), statements sorted by resource; ``Action`` is the sorted union of the actions
  seen on that resource, always a list (even of one), so consumers need no special case;
* ``Sid`` is ``Allow`` + the resource's position (``Allow1`` …): IAM only accepts ASCII
  letters and digits there, and ARNs carry ``:``/``/``;
* the wrapper names the workload and suggests a policy name: ``network-mapper-<ns>-<name>``,
  with characters IAM rejects in names replaced by ``-`` and cut to IAM's 128 characters.

Equal edges (in any order) give equal documents.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from agent.model import AwsTarget, Edge, WorkloadIdentity

POLICY_VERSION = "2012-10-17"
MAX_POLICY_NAME = 128
_NAME_REJECTS = re.compile(r"[^\w+=,.@-]")


def _actions_by_client(edges: Iterable[Edge]) -> dict[WorkloadIdentity, dict[str, set[str]]]:
    clients: dict[WorkloadIdentity, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for edge in edges:
        if not isinstance(edge.target, AwsTarget):
            continue
        actions = {a.strip() for a in edge.aws_actions if a.strip()}
        if actions:
            clients[edge.client][edge.target.arn.strip() or "*"] |= actions
    return clients


def policy_document(actions_by_resource: dict[str, set[str]]) -> dict[str, Any]:
    """``{resource: actions}`` → an IAM policy document (one ``Allow`` statement per resource)."""
    statements = [
        {"Sid": f"Allow{index}", "Effect": "Allow", "Action": sorted(actions), "Resource": resource}
        for index, (resource, actions) in enumerate(sorted(actions_by_resource.items()), start=1)
    ]
    return {"Version": POLICY_VERSION, "Statement": statements}


def policy_name(workload: WorkloadIdentity) -> str:
    """A name IAM accepts for ``workload``'s policy: ``network-mapper-<namespace>-<name>``."""
    return _NAME_REJECTS.sub("-", f"network-mapper-{workload.namespace}-{workload.name}")[:MAX_POLICY_NAME]


def iam_policies(edges: Iterable[Edge]) -> list[dict[str, Any]]:
    """One entry per client workload with AWS actions, sorted by workload::

    {"workload": {"name", "namespace", "kind"}, "policyName": "...",
     "policyDocument": {"Version": "2012-10-17", "Statement": [...]}}
    """
    clients = _actions_by_client(edges)
    return [
        {
            "workload": {"name": client.name, "namespace": client.namespace, "kind": client.kind},
            "policyName": policy_name(client),
            "policyDocument": policy_document(clients[client]),
        }
        for client in sorted(clients)
    ]
