"""IAM export: one policy per client workload with AWS actions, one statement per resource,
deterministic, and names/Sids IAM accepts."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from agent.exports import edges_from_document
from agent.exports.iam import iam_policies, policy_name
from agent.model import AwsTarget, Edge, InternetTarget, Method, WorkloadIdentity

DATA = Path(__file__).resolve().parents[2] / "data" / "exports"
T0 = 1764296106.918878
APP = WorkloadIdentity("shop", "uploader", "Deployment")
JOB = WorkloadIdentity("batch", "report-job", "CronJob")


def aws(client: WorkloadIdentity, arn: str, *actions: str) -> Edge:
    return Edge(client, AwsTarget(arn), T0, T0 + 1, frozenset({Method.AWS}), aws_actions=actions)


def test_one_policy_per_client_one_statement_per_resource() -> None:
    bucket = "arn:aws:s3:::photos/*"
    table = "arn:aws:dynamodb:eu-west-1:123456789012:table/orders"
    edges = [
        aws(APP, bucket, "s3:PutObject"),
        aws(APP, bucket, "s3:GetObject", "s3:PutObject"),
        aws(APP, table, "dynamodb:PutItem"),
        aws(APP, "*", "sts:GetCallerIdentity"),
        aws(JOB, "*", "s3:ListAllMyBuckets"),
    ]
    assert iam_policies(edges) == [
        {
            "workload": {"name": "report-job", "namespace": "batch", "kind": "CronJob"},
            "policyName": "network-mapper-batch-report-job",
            "policyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {"Sid": "Allow1", "Effect": "Allow", "Action": ["s3:ListAllMyBuckets"], "Resource": "*"}
                ],
            },
        },
        {
            "workload": {"name": "uploader", "namespace": "shop", "kind": "Deployment"},
            "policyName": "network-mapper-shop-uploader",
            "policyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "Allow1",
                        "Effect": "Allow",
                        "Action": ["sts:GetCallerIdentity"],
                        "Resource": "*",
                    },
                    {"Sid": "Allow2", "Effect": "Allow", "Action": ["dynamodb:PutItem"], "Resource": table},
                    {
                        "Sid": "Allow3",
                        "Effect": "Allow",
                        "Action": ["s3:GetObject", "s3:PutObject"],
                        "Resource": bucket,
                    },
                ],
            },
        },
    ]


def test_non_aws_edges_and_edges_without_actions_give_nothing() -> None:
    other = WorkloadIdentity("shop", "cart", "Deployment")
    edges = [
        Edge(APP, other, T0, T0, frozenset({Method.TCP})),
        Edge(APP, InternetTarget("example.com"), T0, T0, frozenset({Method.DNS})),
        aws(APP, "arn:aws:s3:::b", ""),
        aws(JOB, "arn:aws:s3:::b"),
    ]
    assert iam_policies(edges) == []
    assert iam_policies([]) == []


def test_empty_arn_is_star_and_actions_are_trimmed() -> None:
    (policy,) = iam_policies([aws(APP, "", " s3:GetObject ")])
    assert policy["policyDocument"]["Statement"] == [
        {"Sid": "Allow1", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "*"}
    ]


def test_deterministic_whatever_the_edge_order() -> None:
    edges = [aws(APP, f"arn:aws:s3:::b{i % 7}", f"s3:Op{i % 5}") for i in range(60)]
    edges += [aws(JOB, f"arn:aws:sqs:eu-west-1:1:q{i % 3}", "sqs:SendMessage") for i in range(10)]
    expected = json.dumps(iam_policies(edges))
    for seed in range(5):
        shuffled = edges[:]
        random.Random(seed).shuffle(shuffled)
        assert json.dumps(iam_policies(shuffled)) == expected


def test_sids_and_names_are_what_iam_accepts() -> None:
    weird = WorkloadIdentity("ns", "a/b c:d" + "x" * 200, "Pod")
    (policy,) = iam_policies([aws(weird, f"arn:aws:s3:::b{i}", "s3:GetObject") for i in range(12)])
    assert re.fullmatch(r"[\w+=,.@-]{1,128}", policy["policyName"])
    assert policy_name(weird) == policy["policyName"]
    sids = [s["Sid"] for s in policy["policyDocument"]["Statement"]]
    assert all(re.fullmatch(r"[A-Za-z0-9]+", sid) for sid in sids)
    assert len(set(sids)) == len(sids) == 12


def test_demo_edges_export() -> None:
    edges = edges_from_document(json.loads((DATA / "demo-edges.json").read_text(encoding="utf-8")))
    policies = iam_policies(edges)
    assert policies, "the demo map has AWS edges"
    aws_clients = {e.client for e in edges if isinstance(e.target, AwsTarget) and e.aws_actions}
    assert [p["workload"]["name"] for p in policies] == [c.name for c in sorted(aws_clients)]
    for policy in policies:
        document = policy["policyDocument"]
        assert document["Version"] == "2012-10-17"
        for statement in document["Statement"]:
            assert statement["Effect"] == "Allow"
            assert statement["Action"] == sorted(set(statement["Action"]))
            assert all(":" in action for action in statement["Action"])
