"""Pure policy evaluation: would these NetworkPolicies / ClientIntents deny an observed edge?

:func:`load_policies` reads policy files (given as text by the CLI, the mapper or the cloud),
:func:`check` judges edges against them with the cluster's facts, and the ``report_*`` functions
render the result as text, JSON or JUnit XML. No I/O here.
"""

from __future__ import annotations

from agent.policy.check import CheckResult, Denial, check
from agent.policy.documents import PolicyError, PolicyRef, PolicySet
from agent.policy.parsing import load_policies
from agent.policy.reports import report_json, report_junit, report_text

__all__ = [
    "CheckResult",
    "Denial",
    "PolicyError",
    "PolicyRef",
    "PolicySet",
    "check",
    "load_policies",
    "report_json",
    "report_junit",
    "report_text",
]
