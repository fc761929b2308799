"""Which AWS account each credential acts in, learned from the traffic, and the IAM calls whose
ARN waits for it (pure: no I/O, no clock of its own; the caller passes ``now``).

Why: a DynamoDB, SNS or KMS request names its resource but not the account it lives in, so
:func:`agent.aws.iam_actions.iam_calls` writes ``*`` in that ARN's account field
(``arn:aws:dynamodb:us-east-1:*:table/orders``). The account is the credential's, and the same
credential often says it elsewhere.

Where the data comes from: the IAM proxy (:mod:`agent.aws.proxy_addon`) hands :class:`AccountBook`
each signed request's credential (:meth:`AccountBook.credential`: a keyed fingerprint of the access
key id from the SigV4 credential scope or SigV2's ``AWSAccessKeyId``, never the key id itself) and
its calls as :class:`Sighting` s. The book learns the credential's account

* from any call whose ARN carries a concrete one (an SQS queue URL, an ARN in a body, an access
  point's host ...): :meth:`AccountBook.admit`; two such accounts that disagree (a resource of
  another account) make the credential ambiguous: it is then filled from STS only;
* from an STS ``GetCallerIdentity`` response body (:func:`identity_account`, ``<Account>`` in XML
  or ``"Account"`` in JSON), which is authoritative: :meth:`AccountBook.learn`.

Where it goes: every method returns the sightings to report now (the proxy puts them in its
collector, :mod:`agent.aws.proxyreports`), with the ``*`` account filled (:func:`with_account`:
exactly the account field; S3 bucket and object ARNs have none and are never touched) when the
credential's account is known. Calls of a credential not known yet are held, up to ``wait``
seconds and ``max_held`` distinct (credential, client, call) at most; they come back as soon as the
account is learned, or as they are (``*``) on expiry (:meth:`AccountBook.expire`, the proxy's timer)
or beyond the bound. Nothing is persisted: the fingerprint key is random per process.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl

from agent.metrics import Counter, Gauge, Metrics
from agent.model import IamCall

__all__ = [
    "DEFAULT_WAIT",
    "AccountBook",
    "AccountMetrics",
    "Sighting",
    "access_key_id",
    "account_field",
    "identity_account",
    "with_account",
]

DEFAULT_WAIT = 10.0  # seconds a call waits for its credential's account
MAX_HELD = 10_000
MAX_CREDENTIALS = 10_000  # least recently used ones are forgotten beyond
FINGERPRINT_BYTES = 16
ANY_ACCOUNT = "*"
_ACCOUNT = re.compile(r"\d{12}\Z")
_KEY_ID = re.compile(r"\w{1,128}\Z", re.ASCII)  # IAM's AccessKeyId: [\w]+, 16 to 128 characters
_XML_ACCOUNT = re.compile(rb"<Account>\s*(\d{12})\s*</Account>")
_JSON_ACCOUNT = re.compile(rb'"Account"\s*:\s*"(\d{12})"')


@dataclass(frozen=True, slots=True)
class Sighting:
    """One IAM call a client made: what the proxy's collector takes."""

    client_ip: str  # normalised (:func:`agent.aws.proxyreports.client_ip`)
    call: IamCall
    seen_at: float  # wall-clock time of the request (orders the collector)


class AccountMetrics(Metrics):
    """The book's metrics; the proxy's :class:`~agent.aws.proxy_addon.AwsProxyMetrics` extends it."""

    def __init__(self, prefix: str = "") -> None:
        def counter(name: str, help: str) -> Counter:
            return Counter(f"{prefix}{name}_total", help)

        self.accounts_learned = counter("accounts_learned", "Credentials whose account was learned.")
        self.calls_account_filled = counter("calls_account_filled", "Calls whose ARN got the account.")
        self.calls_account_unfilled = counter(
            "calls_account_unfilled", "Calls reported with '*' as account: not learned in time."
        )
        self.calls_held_overflow = counter("calls_held_overflow", "Calls not held: the bound was full.")
        self.account_conflicts = counter("account_conflicts", "Credentials seen with two accounts in ARNs.")
        self.calls_held = Gauge(f"{prefix}calls_held", "Calls waiting for their credential's account.")


def access_key_id(headers: Mapping[str, str], query: str) -> str | None:
    """The access key id of a signed request (``headers`` with lower-case names, ``query`` raw),
    or None. Only :class:`AccountBook` calls this, and keeps nothing but its fingerprint."""
    auth = headers.get("authorization", "").strip()
    if auth:
        algorithm, _, rest = auth.partition(" ")
        if algorithm.startswith("AWS4-"):
            fields = dict(f.strip().partition("=")[::2] for f in rest.split(","))
            key_id = fields.get("Credential", "").partition("/")[0]
        elif algorithm == "AWS":
            key_id = rest.strip().partition(":")[0]
        else:
            return None
    else:
        params = dict(parse_qsl(query, keep_blank_values=True)[::-1])  # the first of repeated keys
        key_id = params.get("X-Amz-Credential", "").partition("/")[0] or params.get("AWSAccessKeyId", "")
    return key_id if _KEY_ID.match(key_id) else None


def account_field(arn: str) -> str | None:
    """The account field of ``arn:<partition>:<service>:<region>:<account>:<resource>`` ("" for S3
    buckets and objects, ``*`` when unknown); None when ``arn`` is no ARN (``*``)."""
    parts = arn.split(":", 5)
    return parts[4] if len(parts) == 6 and parts[0] == "arn" else None


def with_account(arn: str, account: str) -> str:
    """``arn`` with ``account`` in its account field if that field is ``*``; otherwise unchanged."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or parts[4] != ANY_ACCOUNT:
        return arn
    parts[4] = account
    return ":".join(parts)


def identity_account(body: bytes) -> str | None:
    """The 12-digit account of an STS ``GetCallerIdentity`` response (XML of the query protocol or
    JSON), or None. Nothing else of the body is read."""
    found = _XML_ACCOUNT.search(body) or _JSON_ACCOUNT.search(body)
    return found.group(1).decode() if found else None


@dataclass(frozen=True, slots=True)
class _Known:
    account: str | None  # None: ambiguous (ARNs named two accounts, no STS answer yet)
    authoritative: bool  # from STS: ARNs no longer change it


class AccountBook:
    """Credential fingerprint → account, and the calls waiting for it; see the module docstring.
    Thread-safe. ``key`` (random by default) keys the fingerprints; ``wait`` is in the units of
    the ``now`` the caller passes (the proxy's: ``time.monotonic``)."""

    def __init__(
        self,
        metrics: AccountMetrics | None = None,
        *,
        wait: float = DEFAULT_WAIT,
        max_held: int = MAX_HELD,
        max_credentials: int = MAX_CREDENTIALS,
        key: bytes | None = None,
    ) -> None:
        if wait < 0 or max_held < 0 or max_credentials < 1:
            raise ValueError("need wait >= 0, max_held >= 0 and max_credentials >= 1")
        self.metrics = metrics if metrics is not None else AccountMetrics()
        self.wait = wait
        self.max_held = max_held
        self.max_credentials = max_credentials
        self._key = key if key is not None else secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._accounts: OrderedDict[str, _Known] = OrderedDict()
        # (credential, client, call) → (newest sighting, deadline); insertion order is deadline order
        self._held: dict[tuple[str, str, IamCall], tuple[float, float]] = {}
        self.metrics.calls_held.set_function(self.__len__)

    def __len__(self) -> int:
        return len(self._held)

    def fingerprint(self, key_id: str) -> str:
        """HMAC-SHA256 of an access key id under this process's key, truncated (hex)."""
        digest = hmac.new(self._key, key_id.encode(), hashlib.sha256).digest()
        return digest[:FINGERPRINT_BYTES].hex()

    def credential(self, headers: Mapping[str, str], query: str) -> str | None:
        """The fingerprint of a request's credential (see :func:`access_key_id`), or None."""
        key_id = access_key_id(headers, query)
        return self.fingerprint(key_id) if key_id is not None else None

    def account_of(self, credential: str) -> str | None:
        known = self._accounts.get(credential)
        return known.account if known is not None else None

    def admit(self, credential: str | None, sightings: Iterable[Sighting], now: float) -> list[Sighting]:
        """One request's calls: learn from their ARNs, then return what goes now (theirs filled
        or as they are, and earlier held calls of the credential) and hold the rest."""
        sightings = list(sightings)
        released: list[Sighting] = []
        with self._lock:
            account = None
            if credential is not None:
                for sighting in sightings:
                    named = account_field(sighting.call.resource)
                    if named is not None and _ACCOUNT.match(named):
                        released += self._learn(credential, named, authoritative=False)
                known = self._accounts.get(credential)
                if known is not None:
                    self._accounts.move_to_end(credential)  # recently used: forgotten last
                    account = known.account
            for sighting in sightings:
                if account_field(sighting.call.resource) != ANY_ACCOUNT:
                    released.append(sighting)
                elif account is not None:
                    released.append(self._filled(sighting, account))
                elif credential is None:
                    self.metrics.calls_account_unfilled.inc()
                    released.append(sighting)
                else:
                    released += self._hold(credential, sighting, now)
        return released

    def learn(self, credential: str, account: str) -> list[Sighting]:
        """The account an STS response names for ``credential`` (authoritative); returns its held
        calls, filled. An account that is not 12 digits is ignored."""
        if not _ACCOUNT.match(account):
            return []
        with self._lock:
            return self._learn(credential, account, authoritative=True)

    def expire(self, now: float) -> list[Sighting]:
        """Held calls whose wait is over, as they are (``*``)."""
        released: list[Sighting] = []
        with self._lock:
            while self._held:
                key = next(iter(self._held))
                seen_at, deadline = self._held[key]
                if deadline > now:
                    break
                del self._held[key]
                released.append(Sighting(key[1], key[2], seen_at))
            self.metrics.calls_account_unfilled.inc(len(released))
        return released

    def release_all(self) -> list[Sighting]:
        """Every held call, as it is (at shutdown: reported rather than lost)."""
        with self._lock:
            held, self._held = self._held, {}
            self.metrics.calls_account_unfilled.inc(len(held))
        return [Sighting(client, call, seen_at) for (_, client, call), (seen_at, _) in held.items()]

    # ------------------------------------------------------------------ under the lock

    def _learn(self, credential: str, account: str, *, authoritative: bool) -> list[Sighting]:
        known = self._accounts.get(credential)
        if known is not None and known.account == account:
            if authoritative and not known.authoritative:
                self._accounts[credential] = _Known(account, True)
            return []
        if known is not None and known.authoritative and not authoritative:
            return []  # a resource of another account: the caller's own account is known
        if known is not None and not authoritative:  # two accounts in ARNs: no guess
            if known.account is not None:
                self.metrics.account_conflicts.inc()
                self._accounts[credential] = _Known(None, False)
            return []
        if known is not None and known.account is not None:  # STS corrects a guess from ARNs
            self.metrics.account_conflicts.inc()
        self._accounts[credential] = _Known(account, authoritative)
        self._accounts.move_to_end(credential)
        while len(self._accounts) > self.max_credentials:
            self._accounts.popitem(last=False)
        self.metrics.accounts_learned.inc()
        mine = [key for key in self._held if key[0] == credential]
        released = []
        for key in mine:
            seen_at, _ = self._held.pop(key)
            released.append(self._filled(Sighting(key[1], key[2], seen_at), account))
        return released

    def _filled(self, sighting: Sighting, account: str) -> Sighting:
        self.metrics.calls_account_filled.inc()
        call = dataclasses.replace(sighting.call, resource=with_account(sighting.call.resource, account))
        return dataclasses.replace(sighting, call=call)

    def _hold(self, credential: str, sighting: Sighting, now: float) -> list[Sighting]:
        key = (credential, sighting.client_ip, sighting.call)
        held = self._held.get(key)
        if held is not None:  # the same call again: one entry, the newest sighting, the first deadline
            self._held[key] = (max(held[0], sighting.seen_at), held[1])
            return []
        if len(self._held) >= self.max_held:
            self.metrics.calls_held_overflow.inc()
            self.metrics.calls_account_unfilled.inc()
            return [sighting]
        self._held[key] = (sighting.seen_at, now + self.wait)
        return []
