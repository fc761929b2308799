"""Kafka authorizer audit lines → the topic access each one records (pure: no I/O, no settings).

Where the lines come from: brokers whose ``kafka.authorizer.logger`` is at DEBUG (allowed accesses are
logged at DEBUG, denied ones at INFO), read by the Kafka watcher from pod logs (the Kubernetes log API)
or from a log file. Where the results go: the watcher turns each :class:`TopicAccess` into a Kafka
intent (client IP → topic, operation) reported to the mapper, which resolves the IP to a workload.

The audit message, as the authorizers build it (apache/kafka sources):

* ``AclAuthorizer.logAuditMessage`` (ZooKeeper era, 2.4 to 3.x)::

    Principal = User:CN=client is Allowed Operation = Read from host = 10.244.0.27 on resource =
    Topic:LITERAL:mytopic for request = Fetch with resourceRefCount = 1

  ``SimpleAclAuthorizer`` (up to 2.3) stops after the resource; 1.x also lacks the pattern type
  (``on resource = Topic:mytopic``).
* ``StandardAuthorizerData.buildAuditMessage`` (KRaft, 3.x and 4.x): the same with a lower-case
  ``operation =``, the ``AclOperation`` enum name (``READ``, ``DESCRIBE_CONFIGS``) and a suffix
  ``based on rule MatchingAcl(acl=StandardAcl(...))`` / ``DefaultDeny`` / ``DefaultAllow`` / ``SuperUser``.

Whatever the log layout puts around the message (Kafka's ``[%d] %p %m (%c)%n``, Strimzi's
``%d{ISO8601} %p %m (%c) [%t]%n`` or its Log4j2 layout, a ``<RFC3339 timestamp> `` prefix from the
Kubernetes log API's ``timestamps=true``) is ignored: the parser reads from ``Principal = `` on, so
callers need not strip any prefix. A trailing ``\\n`` or ``\\r\\n`` is ignored too.

Results: a :class:`TopicAccess`, or the :class:`LineKind` saying why the line gave none. Resource-type
checks (``Topic:UNKNOWN:NONE`` from ``authorizeByResourceType``, KRaft's ``for resource type = TOPIC``)
name no topic and count as :attr:`LineKind.OTHER_RESOURCE`. Hosts are kept as Java printed them
(``getHostAddress``: IPv6 uncompressed, e.g. ``fd00:10:244:0:0:0:0:1b``, maybe with a ``%scope``);
compare them as :mod:`ipaddress` objects, not as strings. Topic names must be legal Kafka topic
names (``[a-zA-Z0-9._-]``, at most 249 characters) and principals at most 1024 characters long;
anything else is :attr:`LineKind.UNPARSED`.

Brokers log the same access over and over (every fetch of every consumer), so results are memoised
per message text in bounded module-level tables: a repeated line costs two ``str.find`` and a dict
lookup. The memo changes no result (the tests check a warm memo against an empty one).
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import MutableMapping
from dataclasses import dataclass

__all__ = [
    "ACL_OPERATIONS",
    "LineKind",
    "TopicAccess",
    "classify_authorizer_line",
    "parse_authorizer_line",
]


class LineKind(enum.Enum):
    """Why a line gave no topic access."""

    # Not an audit line at all: most broker log lines, and the authorizer logger's other messages
    # ("principal = ... is a super user", "No acl found for resource ...").
    NOT_AUTHORIZER = "not_authorizer"
    # An audit line about a Group, TransactionalId, Cluster, DelegationToken, User ..., or a
    # resource-type check that names no topic.
    OTHER_RESOURCE = "other_resource"
    # Looks like an audit line ("Principal = " and " is Allowed"/" is Denied") but matches no layout,
    # or carries a host that is not an IP, an unknown operation or an illegal topic name.
    UNPARSED = "unparsed"


@dataclass(frozen=True, slots=True)
class TopicAccess:
    """One authorizer decision about one topic."""

    principal: str  # kept whole, as logged: "User:CN=client,OU=Dev Team,O=Example\, Inc.,C=US"
    host: str  # the client IP as logged (IPv4 or IPv6, no brackets)
    operation: str  # canonical ACL operation, CamelCase as kafka-acls.sh spells it: Read, DescribeConfigs
    topic: str
    allowed: bool
    pattern_type: str = "LITERAL"  # LITERAL / PREFIXED as logged; absent (Kafka 1.x) means LITERAL


ACL_OPERATIONS: tuple[str, ...] = (
    "Read",
    "Write",
    "Describe",
    "Create",
    "Alter",
    "Delete",
    "DescribeConfigs",
    "AlterConfigs",
    "IdempotentWrite",
    "ClusterAction",
    "All",
)
"""The canonical names of Kafka's ACL operations (``SecurityUtils.operationName``, what
``kafka-acls.sh`` and Strimzi take): :attr:`TopicAccess.operation` is one of them. The mapper maps
them to its schema's ``KafkaOperation`` (Read → CONSUME, Write → PRODUCE ...)."""

# As logged → canonical. ZooKeeper-era authorizers print SecurityUtils.operationName (CamelCase);
# KRaft's StandardAuthorizer prints the AclOperation enum constant (UPPER_SNAKE).
_OPERATIONS: dict[str, str] = {
    **{name: name for name in ACL_OPERATIONS},
    **{re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper(): name for name in ACL_OPERATIONS},
}

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
# Anchored at "Principal = " (the caller finds it with str.find, far cheaper than a regex search).
# The principal is non-greedy up to the fixed words after it: mTLS DNs carry spaces, commas and
# equals signs, but never " is Allowed Operation = ". IPv4 hosts are validated here, exactly; IPv6
# ones (group 5) only by character set, then by ipaddress. A topic (group 7) must end where the
# authorizers end it (" for request = "), at the layout's " (logger)" or at the end of the line, so
# "Topic:UNKNOWN:NONE" and names with illegal characters ("bad name", "a/b") fall through to the
# slow path instead of yielding a truncated name; any other resource type matches the last branch
# (group 7 absent). Every repeat is bounded (a principal at 1024 characters: X.509 DNs are far
# shorter) so that a huge garbage line costs linear time: unbounded, a 250 kB line of repeated audit
# fragments took seconds. ASCII: \s and \w must not take Unicode digits or separators.
_AUDIT_LINE = re.compile(
    r"Principal = (.{1,1024}?) is (Allowed|Denied) [Oo]peration = ([A-Za-z_]{1,32}) from host = "
    rf"(?:((?:{_OCTET}\.){{3}}{_OCTET})|([0-9A-Fa-f.:]{{2,45}}(?:%[\w.-]{{1,64}})?)) on resource = "
    r"(?:Topic:(?:(LITERAL|PREFIXED):)?([A-Za-z0-9._-]{1,249})(?= for request = | \(|\s*$)"
    r"|(?!Topic:)[A-Za-z]{1,32}:)",
    re.ASCII,
)
# Any audit message, whatever its resource: tells OTHER_RESOURCE from UNPARSED once the fast path
# failed. Group 1 is the resource type, absent for a resource-type check.
_AUDIT = re.compile(
    r"Principal = .{1,1024}? is (?:Allowed|Denied) [Oo]peration = \S{1,64} from host = \S{1,128} "
    r"(?:on resource = ([A-Za-z]{1,32}):|for resource type = [A-Z_]{1,32})",
    re.ASCII,
)
# Where the AclAuthorizer and StandardAuthorizer messages go on past the resource.
_REQUEST = " for request = "

# Memo tables. Clients repeat the same access many times a second, so most lines hit. Bounded: when
# full they are emptied (a rare rebuild is cheaper than LRU bookkeeping on every line).
_CACHE_LIMIT = 4096
_RESULTS: dict[str, TopicAccess | LineKind] = {}
_IPV6_HOSTS: dict[str, bool] = {}


def _is_ipv6(host: str) -> bool:
    valid = _IPV6_HOSTS.get(host)
    if valid is None:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            valid = False
        else:
            valid = True
        if len(_IPV6_HOSTS) >= _CACHE_LIMIT:
            _IPV6_HOSTS.clear()
        _IPV6_HOSTS[host] = valid
    return valid


def _result(match: re.Match[str]) -> TopicAccess | LineKind:
    principal, result, logged_operation, ipv4, ipv6, pattern_type, topic = match.groups()
    if topic is None:
        return LineKind.OTHER_RESOURCE
    operation = _OPERATIONS.get(logged_operation)
    if operation is None or (ipv4 is None and not _is_ipv6(ipv6)):
        return LineKind.UNPARSED
    return TopicAccess(
        principal, ipv4 or ipv6, operation, topic, result == "Allowed", pattern_type or "LITERAL"
    )


def _slow_path(line: str, start: int) -> LineKind:
    """For lines that carry "Principal = " but no audit message the fast regex takes."""
    match = _AUDIT.search(line, start)
    if match is None:
        looks_audit = " is Allowed" in line or " is Denied" in line
        return LineKind.UNPARSED if looks_audit else LineKind.NOT_AUTHORIZER
    resource_type = match.group(1)
    if resource_type != "Topic" or line.startswith("UNKNOWN:", match.end()):
        return LineKind.OTHER_RESOURCE
    return LineKind.UNPARSED


def classify_authorizer_line(
    line: str, memo: MutableMapping[str, TopicAccess | LineKind] | None = None
) -> TopicAccess | LineKind:
    """The topic access one log line records, or why it records none. Never raises.

    ``line`` may carry any layout prefix (a Kubernetes ``timestamps=true`` prefix included) and a
    trailing newline. ``memo`` remembers results by message (below); by default this module's own,
    bounded one — a caller that wants none passes an empty dict.
    """
    results = _RESULTS if memo is None else memo
    start = line.find("Principal = ")
    if start < 0:
        return LineKind.NOT_AUTHORIZER
    # The memo key is the message up to " for request = ": the fast regex reads nothing past it (its
    # tokens after the principal hold no space but their fixed separators, so no match can run
    # across it), so equal keys give equal results, whatever request, count, rule, timestamp or
    # thread follow. A hit skips the regex. Messages without the suffix (SimpleAclAuthorizer) are
    # not memoised.
    end = line.find(_REQUEST, start)
    key = line[start:end] if end >= 0 else ""
    if key:
        found = results.get(key)
        if found is not None:
            return found
    match = _AUDIT_LINE.match(line, start)
    if match is None:
        return _slow_path(line, start)
    result = _result(match)
    if key and match.end() <= end:
        if len(results) >= _CACHE_LIMIT:
            results.clear()
        results[key] = result
    return result


def parse_authorizer_line(line: str) -> TopicAccess | None:
    """The topic access one log line records, or None (see :func:`classify_authorizer_line`)."""
    result = classify_authorizer_line(line)
    return result if isinstance(result, TopicAccess) else None
