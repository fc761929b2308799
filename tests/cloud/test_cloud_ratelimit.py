"""The local server's per-tenant limits as pure state, on a clock the test moves: token buckets,
requests in flight, Retry-After, and which key a request counts against."""

from __future__ import annotations

import pytest

from cloud_functions.auth import hash_token
from cloud_functions.ratelimit import LimitKeys, Refusal, TenantLimiter, TenantLimits

TOKEN = "nm_" + "ab" * 32
OTHER = "nm_" + "cd" * 32


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def admitted(limiter: TenantLimiter, key: str, n: int) -> list[Refusal | None]:
    """``n`` requests one after the other, each answered (released) before the next."""
    results = []
    for _ in range(n):
        refusal = limiter.admit(key)
        if refusal is None:
            limiter.release(key)
        results.append(refusal)
    return results


def test_a_burst_is_admitted_then_the_rate() -> None:
    clock = Clock()
    limiter = TenantLimiter(TenantLimits(rate=2.0, burst=3, in_flight=5), clock)
    assert admitted(limiter, "a", 3) == [None] * 3
    refusal = limiter.admit("a")
    assert refusal == Refusal("rate", 0.5) and refusal.retry_after_header == "1"
    clock.now += 0.5  # one token back
    assert admitted(limiter, "a", 2) == [None, Refusal("rate", 0.5)]
    clock.now += 60  # a quiet minute refills the bucket up to the burst, not beyond
    assert [r is None for r in admitted(limiter, "a", 4)] == [True, True, True, False]


def test_keys_have_buckets_of_their_own() -> None:
    limiter = TenantLimiter(TenantLimits(rate=1.0, burst=1), Clock())
    assert limiter.admit("a") is None
    limiter.release("a")
    assert limiter.admit("a") is not None
    assert limiter.admit("b") is None


def test_requests_in_flight_are_capped_until_released() -> None:
    limiter = TenantLimiter(TenantLimits(rate=100.0, burst=100, in_flight=2), Clock())
    assert limiter.admit("a") is None and limiter.admit("a") is None
    assert limiter.in_flight("a") == 2
    assert limiter.admit("a") == Refusal("in_flight", 1.0)
    assert limiter.admit("b") is None, "another key has its own"
    limiter.release("a")
    assert limiter.admit("a") is None
    limiter.release("nobody")  # nothing to release: no error, no negative count
    assert limiter.in_flight("nobody") == 0


def test_idle_full_buckets_are_forgotten_past_the_bound() -> None:
    clock = Clock()
    limiter = TenantLimiter(TenantLimits(rate=1.0, burst=2, in_flight=1), clock, remembered=3)
    assert limiter.admit("busy") is None  # in flight: kept
    for key in ("spent", "idle"):
        assert admitted(limiter, key, 1) == [None]
    clock.now += 0.5  # "spent" and "idle" are not full again yet: kept
    assert limiter.admit("new") is None and len(limiter) == 4
    limiter.release("new")
    clock.now += 5  # now they are
    assert limiter.admit("newer") is None
    assert len(limiter) == 2, "only the busy one and the newest are left"
    assert limiter.admit("busy") == Refusal("in_flight", 1.0), "the busy one kept its count"


def test_retry_after_is_whole_seconds_and_at_least_one() -> None:
    assert Refusal("rate", 0.01).retry_after_header == "1"
    assert Refusal("rate", 2.2).retry_after_header == "3"


@pytest.mark.parametrize("limits", [(0.0, 1, 1), (1.0, 0, 1), (1.0, 1, 0)])
def test_limits_refuse_nonsense(limits: tuple[float, int, int]) -> None:
    with pytest.raises(ValueError, match="limits need"):
        TenantLimits(*limits)


def test_keys_are_learnt_from_answers() -> None:
    keys = LimitKeys()
    assert keys.key(f"Bearer {TOKEN}", "10.0.0.1") == (f"token:{hash_token(TOKEN)}", hash_token(TOKEN))
    keys.learn(hash_token(TOKEN), "t_1", 200)
    keys.learn(hash_token(OTHER), "t_1", 403)  # authenticated, though refused: still its tenant's
    assert keys.key(f"Bearer {TOKEN}", "10.0.0.1")[0] == "tenant:t_1"
    assert keys.key(f"bearer {OTHER}", "10.0.0.2")[0] == "tenant:t_1", "one tenant, one key"
    keys.learn(hash_token(TOKEN), "", 401)  # revoked: no longer spends the tenant's budget
    assert keys.key(f"Bearer {TOKEN}", "10.0.0.1")[0] == f"token:{hash_token(TOKEN)}"
    keys.learn(hash_token(OTHER), "", 200)  # a public route: says nothing of the token
    assert keys.key(f"Bearer {OTHER}", "10.0.0.1")[0] == "tenant:t_1"


@pytest.mark.parametrize("authorization", [None, "", "Basic abc", "Bearer not-a-token"])
def test_without_a_token_the_source_address_is_the_key(authorization: str | None) -> None:
    assert LimitKeys().key(authorization, "10.0.0.9") == ("address:10.0.0.9", "")


def test_only_so_many_tokens_are_remembered() -> None:
    keys = LimitKeys(remembered=2)
    keys.learn(hash_token(TOKEN), "t_0", 200)
    keys.learn(hash_token(OTHER), "t_1", 200)
    keys.key(f"Bearer {TOKEN}", "x")
    keys.learn(hash_token(TOKEN), "t_0", 200)  # answered again: the newest now
    keys.learn("another hash", "t_2", 200)
    assert keys.key(f"Bearer {TOKEN}", "x")[0] == "tenant:t_0"
    assert keys.key(f"Bearer {OTHER}", "x")[0].startswith("token:"), "the oldest is forgotten"
