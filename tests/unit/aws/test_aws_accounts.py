"""agent.aws.accounts: the credential fingerprint, learning a credential's account (from ARNs and
from both forms of an STS GetCallerIdentity response), filling exactly the account field, and the
calls held until the account is known: released on learning, on expiry, beyond the bound and at
shutdown, with the metrics counting each. Time is the ``now`` passed in: no clock, no sleep."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.aws.accounts import (
    AccountBook,
    AccountMetrics,
    Sighting,
    access_key_id,
    account_field,
    identity_account,
    with_account,
)
from agent.model import IamCall

KEY_ID = "AKIAIOSFODNN7EXAMPLE"
OTHER_KEY_ID = "ASIAQ3EGRX7Z5EXAMPLE"
ACCOUNT = "123456789012"
T = 1_714_564_800.0  # wall-clock sighting times
TABLE = "arn:aws:dynamodb:us-east-1:*:table/network-mapper-demo"
TABLE_FILLED = f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/network-mapper-demo"
QUEUE = f"arn:aws:sqs:us-east-1:{ACCOUNT}:demo-queue"
OBJECT = "arn:aws:s3:::demo-bucket/a.txt"

PUT_ITEM = IamCall("dynamodb", "PutItem", "dynamodb:PutItem", TABLE, "us-east-1")
GET_ITEM = IamCall("dynamodb", "GetItem", "dynamodb:GetItem", TABLE, "us-east-1")
SEND = IamCall("sqs", "SendMessage", "sqs:SendMessage", QUEUE, "us-east-1")
PUT_OBJECT = IamCall("s3", "PutObject", "s3:PutObject", OBJECT, "us-east-1")
WHO = IamCall("sts", "GetCallerIdentity", "sts:GetCallerIdentity", "*", "us-east-1")

SIGV4 = (
    f"AWS4-HMAC-SHA256 Credential={KEY_ID}/20240501/us-east-1/dynamodb/aws4_request, "
    "SignedHeaders=host;x-amz-date, "
    "Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
)
XML_IDENTITY = f"""<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <GetCallerIdentityResult>
    <Arn>arn:aws:sts::{ACCOUNT}:assumed-role/demo/session</Arn>
    <UserId>AROAEXAMPLE:session</UserId>
    <Account>{ACCOUNT}</Account>
  </GetCallerIdentityResult>
  <ResponseMetadata><RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId></ResponseMetadata>
</GetCallerIdentityResponse>""".encode()
JSON_IDENTITY = (
    b'{"UserId": "AIDAEXAMPLE", "Account" : "'
    + ACCOUNT.encode()
    + b'", "Arn": "arn:aws:iam::'
    + ACCOUNT.encode()
    + b':user/demo"}'
)


def seen(call: IamCall, client: str = "10.244.1.7", at: float = T) -> Sighting:
    return Sighting(client, call, at)


def resources(sightings: list[Sighting]) -> list[tuple[str, str]]:
    return [(s.call.action, s.call.resource) for s in sightings]


# ---------------------------------------------------------------------------- the credential


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        ({"authorization": SIGV4}, ""),
        ({"authorization": f"AWS4-ECDSA-P256-SHA256 Credential={KEY_ID}/20240501/s3/aws4_request, S=x"}, ""),
        ({"authorization": f"AWS {KEY_ID}:frJIUN8DYpKDtOLCwo//yllqDzg="}, ""),  # SigV2
        (
            {},
            f"X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={KEY_ID}%2F20240501%2Fus-east-1%2Fs3%2Faws4_request",
        ),
        ({}, f"AWSAccessKeyId={KEY_ID}&Signature=abc%3D&Expires=1714568400"),  # SigV2 presigned
    ],
)
def test_the_access_key_id_is_read_from_every_signature_form(headers: dict[str, str], query: str) -> None:
    assert access_key_id(headers, query) == KEY_ID


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        ({}, ""),
        ({"authorization": "Bearer abc"}, ""),
        ({"authorization": "AWS4-HMAC-SHA256 SignedHeaders=host"}, ""),
        ({"authorization": "AWS4-HMAC-SHA256 Credential=not a key/20240501/x/y/aws4_request"}, ""),
        ({}, "X-Amz-Credential=%2F20240501"),
    ],
)
def test_no_credential_is_none(headers: dict[str, str], query: str) -> None:
    book = AccountBook()
    assert access_key_id(headers, query) is None
    assert book.credential(headers, query) is None


@given(st.text(string.ascii_uppercase + string.digits, min_size=16, max_size=128))
def test_the_fingerprint_never_equals_nor_contains_the_key_id(key_id: str) -> None:
    book = AccountBook(key=b"k" * 32)
    fingerprint = book.fingerprint(key_id)
    assert fingerprint != key_id and key_id not in fingerprint and key_id.lower() not in fingerprint
    assert len(fingerprint) == 32 and fingerprint == book.fingerprint(key_id)


def test_fingerprints_are_per_process_and_per_key() -> None:
    one, other = AccountBook(), AccountBook()
    assert one.fingerprint(KEY_ID) != other.fingerprint(KEY_ID)  # random key per book (process)
    assert one.fingerprint(KEY_ID) != one.fingerprint(OTHER_KEY_ID)
    assert one.credential({"authorization": SIGV4}, "") == one.fingerprint(KEY_ID)


# ---------------------------------------------------------------------------- ARNs and responses


@pytest.mark.parametrize(
    ("arn", "field"),
    [
        (TABLE, "*"),
        (QUEUE, ACCOUNT),
        (OBJECT, ""),  # S3 buckets and objects have no account
        ("*", None),
        ("arn:aws:s3", None),
    ],
)
def test_the_account_field(arn: str, field: str | None) -> None:
    assert account_field(arn) == field


@pytest.mark.parametrize(
    ("arn", "filled"),
    [
        (TABLE, TABLE_FILLED),
        ("arn:aws-cn:kms:cn-north-1:*:key/*", f"arn:aws-cn:kms:cn-north-1:{ACCOUNT}:key/*"),  # resource kept
        ("arn:aws:iam::*:role/a:b:*", f"arn:aws:iam::{ACCOUNT}:role/a:b:*"),
        (OBJECT, OBJECT),  # no account field: untouched
        ("arn:aws:s3:::*", "arn:aws:s3:::*"),
        ("arn:aws:sqs:us-east-1:210987654321:q", "arn:aws:sqs:us-east-1:210987654321:q"),  # already known
        ("arn:aws:dynamodb:*:*:table/*", f"arn:aws:dynamodb:*:{ACCOUNT}:table/*"),  # only the account
        ("*", "*"),
    ],
)
def test_only_the_account_field_is_filled(arn: str, filled: str) -> None:
    assert with_account(arn, ACCOUNT) == filled


@pytest.mark.parametrize(
    ("body", "account"),
    [
        (XML_IDENTITY, ACCOUNT),
        (JSON_IDENTITY, ACCOUNT),
        (b'{"GetCallerIdentityResult":{"Account":"210987654321"}}', "210987654321"),
        (b"<Account>12345</Account>", None),  # not an account
        (b"<Error><Code>ExpiredToken</Code></Error>", None),
        (b"", None),
    ],
)
def test_the_account_of_a_caller_identity(body: bytes, account: str | None) -> None:
    assert identity_account(body) == account


# ---------------------------------------------------------------------------- learning and holding


def test_a_call_without_an_account_waits_for_its_credentials_account() -> None:
    book = AccountBook()
    cred = book.fingerprint(KEY_ID)
    assert book.admit(cred, [seen(PUT_ITEM), seen(PUT_OBJECT), seen(WHO)], now=0.0) == [
        seen(PUT_OBJECT),  # no account field: goes as it is
        seen(WHO),
    ]
    assert len(book) == 1 and book.metrics.calls_held.value == 1
    released = book.learn(cred, ACCOUNT)
    assert resources(released) == [("dynamodb:PutItem", TABLE_FILLED)]
    assert released[0].seen_at == T and released[0].client_ip == "10.244.1.7"
    assert len(book) == 0 and book.account_of(cred) == ACCOUNT
    assert resources(book.admit(cred, [seen(GET_ITEM)], now=1.0)) == [("dynamodb:GetItem", TABLE_FILLED)]
    assert book.metrics.accounts_learned.value == 1 and book.metrics.calls_account_filled.value == 2
    assert book.metrics.calls_account_unfilled.value == 0


def test_an_arn_with_an_account_teaches_it_to_its_credential_and_releases_the_held_calls() -> None:
    book = AccountBook()
    cred, other = book.fingerprint(KEY_ID), book.fingerprint(OTHER_KEY_ID)
    assert book.admit(cred, [seen(PUT_ITEM)], now=0.0) == []
    assert book.admit(other, [seen(GET_ITEM, client="10.244.1.8")], now=0.0) == []
    released = book.admit(cred, [seen(SEND, at=T + 1)], now=0.5)
    assert resources(released) == [("dynamodb:PutItem", TABLE_FILLED), ("sqs:SendMessage", QUEUE)]
    assert book.account_of(cred) == ACCOUNT and book.account_of(other) is None
    assert len(book) == 1  # the other credential's call still waits


def test_the_same_request_learns_before_it_is_filled() -> None:
    book = AccountBook()
    cred = book.fingerprint(KEY_ID)
    assert resources(book.admit(cred, [seen(PUT_ITEM), seen(SEND)], now=0.0)) == [
        ("dynamodb:PutItem", TABLE_FILLED),
        ("sqs:SendMessage", QUEUE),
    ]


def test_held_calls_go_unfilled_when_their_wait_is_over() -> None:
    book = AccountBook(wait=10.0)
    cred = book.fingerprint(KEY_ID)
    book.admit(cred, [seen(PUT_ITEM)], now=0.0)
    book.admit(cred, [seen(GET_ITEM, at=T + 5)], now=5.0)
    assert book.expire(9.99) == []
    assert book.expire(10.0) == [seen(PUT_ITEM)]
    assert book.expire(14.0) == []
    assert book.expire(15.0) == [seen(GET_ITEM, at=T + 5)]
    assert len(book) == 0 and book.metrics.calls_account_unfilled.value == 2
    assert book.learn(cred, ACCOUNT) == []  # nothing left to release


def test_the_same_call_is_held_once_with_its_newest_sighting_and_first_deadline() -> None:
    book = AccountBook(wait=10.0)
    cred = book.fingerprint(KEY_ID)
    for i in range(5):
        book.admit(cred, [seen(PUT_ITEM, at=T + i)], now=float(i))
    assert len(book) == 1
    assert book.expire(10.0) == [seen(PUT_ITEM, at=T + 4)]


def test_the_hold_is_bounded_and_what_exceeds_it_goes_as_it_is() -> None:
    book = AccountBook(max_held=2)
    cred = book.fingerprint(KEY_ID)
    calls = [
        IamCall("dynamodb", "GetItem", "dynamodb:GetItem", f"{TABLE}-{i}", "us-east-1") for i in range(3)
    ]
    assert book.admit(cred, [seen(c) for c in calls], now=0.0) == [seen(calls[2])]
    assert len(book) == 2
    assert book.metrics.calls_held_overflow.value == 1 and book.metrics.calls_account_unfilled.value == 1
    assert [s.call.resource for s in book.learn(cred, ACCOUNT)] == [
        with_account(calls[0].resource, ACCOUNT),
        with_account(calls[1].resource, ACCOUNT),
    ]


def test_a_request_without_a_credential_is_never_held() -> None:
    book = AccountBook()
    assert book.admit(None, [seen(PUT_ITEM), seen(SEND)], now=0.0) == [seen(PUT_ITEM), seen(SEND)]
    assert len(book) == 0 and book.metrics.accounts_learned.value == 0


def test_release_all_reports_what_is_held_as_it_is() -> None:
    book = AccountBook()
    book.admit(book.fingerprint(KEY_ID), [seen(PUT_ITEM)], now=0.0)
    assert book.release_all() == [seen(PUT_ITEM)]
    assert len(book) == 0 and book.metrics.calls_account_unfilled.value == 1


def test_arns_of_two_accounts_make_the_credential_ambiguous_until_sts_says() -> None:
    book = AccountBook()
    cred = book.fingerprint(KEY_ID)
    other_queue = IamCall(
        "sqs", "SendMessage", "sqs:SendMessage", "arn:aws:sqs:us-east-1:210987654321:q", "r"
    )
    book.admit(cred, [seen(SEND)], now=0.0)
    book.admit(cred, [seen(other_queue)], now=0.0)
    assert book.account_of(cred) is None and book.metrics.account_conflicts.value == 1
    assert book.admit(cred, [seen(PUT_ITEM)], now=0.0) == []  # no guess: held
    assert resources(book.learn(cred, ACCOUNT)) == [("dynamodb:PutItem", TABLE_FILLED)]
    book.admit(cred, [seen(other_queue)], now=1.0)  # a resource of another account: STS wins
    assert book.account_of(cred) == ACCOUNT


def test_sts_corrects_an_account_guessed_from_an_arn() -> None:
    book = AccountBook()
    cred = book.fingerprint(KEY_ID)
    book.admit(cred, [seen(SEND)], now=0.0)
    book.learn(cred, "210987654321")
    assert book.account_of(cred) == "210987654321" and book.metrics.account_conflicts.value == 1
    assert book.metrics.accounts_learned.value == 2


def test_an_account_that_is_not_twelve_digits_is_ignored() -> None:
    book = AccountBook()
    cred = book.fingerprint(KEY_ID)
    book.admit(cred, [seen(PUT_ITEM)], now=0.0)
    assert book.learn(cred, "aws") == [] and book.account_of(cred) is None
    odd = IamCall("iam", "GetPolicy", "iam:GetPolicy", "arn:aws:iam::aws:policy/ReadOnlyAccess", "")
    book.admit(cred, [seen(odd)], now=0.0)
    assert book.account_of(cred) is None and len(book) == 1


def test_the_least_recently_used_credentials_are_forgotten_beyond_the_bound() -> None:
    book = AccountBook(max_credentials=2)
    first, second, third = (
        book.fingerprint(k) for k in ("AKIA0000000000000001", "AKIA0000000000000002", "AKIA0000000000000003")
    )
    book.learn(first, ACCOUNT)
    book.learn(second, ACCOUNT)
    book.admit(first, [seen(PUT_OBJECT)], now=0.0)  # used: second is now the oldest
    book.learn(third, ACCOUNT)
    assert [book.account_of(c) for c in (first, second, third)] == [ACCOUNT, None, ACCOUNT]


def test_metrics_are_named_under_the_prefix() -> None:
    names = set(AccountMetrics("p_").snapshot())
    assert names == {
        "p_accounts_learned_total",
        "p_calls_account_filled_total",
        "p_calls_account_unfilled_total",
        "p_calls_held_overflow_total",
        "p_account_conflicts_total",
        "p_calls_held",
    }


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="wait"):
        AccountBook(wait=-1)
