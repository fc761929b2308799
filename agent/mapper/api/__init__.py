"""The mapper's GraphQL API (``:9090/query``), wire-compatible with Otterize's mapper schema.

Producers (sniffer, Kafka and Istio watchers, AWS proxy) report observations through the
mutations; the API converts them (:mod:`.mutations`), queues them (:mod:`.reportqueue`), and worker
threads resolve them into edges (the resolver) and record them (the store). Queries read the
store and answer the Otterize CLI (``serviceIntents``, ``intents``) and our CLI and console
(``edges``). :func:`create_app` builds the Starlette app that the mapper runs under uvicorn.
"""

from agent.mapper.api.app import create_app
from agent.mapper.api.schema import build_schema

__all__ = ["build_schema", "create_app"]
