"""Per-tenant request limits of the local server: which bucket a request counts against
(:class:`LimitKeys`) and whether that bucket admits it now (:class:`TenantLimiter`).

The local front (:mod:`cloud_functions.localfront`) asks before it hands a request to a worker,
and tells when the worker has answered. Each key has a token bucket (``rate`` requests a second,
up to ``burst`` at once after a quiet spell) and a cap on its requests in flight, so one tenant
can neither flood the workers nor hold all of them: a refused request gets a
:class:`Refusal` with the seconds to wait (the front's ``429`` and ``Retry-After``).

The front sees only the bearer token, so keys are learnt from the workers' answers: a token the
cloud has authenticated counts against its tenant (every token of a tenant shares one bucket); a
token not (yet) known counts against its own hash; a request without a token against its source
address. On AWS the API Gateway stage's throttling plays this role.

Pure state, no I/O and no threads: the front calls it from its event loop only, with the clock
injected.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from cloud_functions.auth import bearer_token, hash_token

KEYS_REMEMBERED = 100_000
"""Tokens whose tenant is remembered, and idle buckets kept, at most (beyond that the oldest
are forgotten: a forgotten token counts against its own hash until answered again)."""


@dataclass(frozen=True)
class TenantLimits:
    rate: float = 50.0
    """Requests a second a key may sustain."""
    burst: int = 100
    """Requests a key may send at once after a quiet spell (the bucket's size)."""
    in_flight: int = 1
    """Requests of one key being answered at once (the server sets its workers less one)."""

    def __post_init__(self) -> None:
        if not (self.rate > 0 and self.burst >= 1 and self.in_flight >= 1):
            raise ValueError(f"limits need rate > 0, burst >= 1 and in_flight >= 1, got {self}")


@dataclass(frozen=True)
class Refusal:
    reason: str  # "rate" (the bucket is empty) or "in_flight" (too many being answered)
    retry_after: float  # seconds until a retry may be admitted

    @property
    def retry_after_header(self) -> str:
        """``Retry-After`` in whole seconds (at least 1: 0 would invite an immediate retry)."""
        return str(max(1, math.ceil(self.retry_after)))


@dataclass
class _Bucket:
    tokens: float
    at: float  # when ``tokens`` was last brought up to date
    in_flight: int = 0


class TenantLimiter:
    """Token buckets and in-flight counts by key; :meth:`admit` each request, :meth:`release`
    each one admitted once it is answered."""

    def __init__(
        self,
        limits: TenantLimits,
        clock: Callable[[], float] = time.monotonic,
        remembered: int = KEYS_REMEMBERED,
    ) -> None:
        self.limits = limits
        self._clock = clock
        self._remembered = remembered
        self._buckets: dict[str, _Bucket] = {}

    def __len__(self) -> int:
        """Keys with a bucket now."""
        return len(self._buckets)

    def admit(self, key: str) -> Refusal | None:
        """None (admitted: call :meth:`release` when answered), or why not and for how long."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            self._forget_idle(now)
            bucket = self._buckets[key] = _Bucket(float(self.limits.burst), now)
        bucket.tokens = min(float(self.limits.burst), bucket.tokens + (now - bucket.at) * self.limits.rate)
        bucket.at = now
        if bucket.in_flight >= self.limits.in_flight:
            # No telling when one finishes: a second is the shortest Retry-After there is.
            return Refusal("in_flight", 1.0)
        if bucket.tokens < 1.0:
            return Refusal("rate", (1.0 - bucket.tokens) / self.limits.rate)
        bucket.tokens -= 1.0
        bucket.in_flight += 1
        return None

    def release(self, key: str) -> None:
        bucket = self._buckets.get(key)
        if bucket is not None and bucket.in_flight > 0:
            bucket.in_flight -= 1

    def in_flight(self, key: str) -> int:
        """The key's requests admitted and not yet released."""
        bucket = self._buckets.get(key)
        return bucket.in_flight if bucket else 0

    def _forget_idle(self, now: float) -> None:
        """Past ``remembered`` buckets, drop those idle and full again: a new bucket is full
        too, so forgetting them changes nothing (random tokens cannot grow the table without
        bound)."""
        if len(self._buckets) < self._remembered:
            return
        burst, rate = float(self.limits.burst), self.limits.rate
        idle = [
            key
            for key, b in self._buckets.items()
            if b.in_flight == 0 and b.tokens + (now - b.at) * rate >= burst
        ]
        for key in idle:
            del self._buckets[key]


class LimitKeys:
    """The key a request counts against: ``tenant:<id>`` once an answer has named the tenant of
    its token, ``token:<sha256>`` before, ``address:<ip>`` without a (well-formed) token."""

    def __init__(self, remembered: int = KEYS_REMEMBERED) -> None:
        self._tenants: OrderedDict[str, str] = OrderedDict()  # token hash → tenant id, oldest first
        self._remembered = remembered

    def key(self, authorization: str | None, source_ip: str) -> tuple[str, str]:
        """``(key, token hash)`` for a request (the hash "" when it has no token)."""
        token = bearer_token(authorization)
        if token is None:
            return f"address:{source_ip}", ""
        digest = hash_token(token)
        tenant = self._tenants.get(digest)
        return (f"tenant:{tenant}" if tenant else f"token:{digest}"), digest

    def learn(self, token_hash: str, tenant: str, status: int) -> None:
        """What a worker's answer says of the token: its tenant, or (401) that it is no token at
        all any more (revoked: it must not keep spending its old tenant's budget)."""
        if not token_hash:
            return
        if tenant:
            self._tenants[token_hash] = tenant
            self._tenants.move_to_end(token_hash)
            while len(self._tenants) > self._remembered:
                self._tenants.popitem(last=False)
        elif status == 401:
            self._tenants.pop(token_hash, None)
