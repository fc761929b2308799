"""The cloud backend of network-mapper: Lambda handlers, the per-tenant graph stores and the console.

It imports only :mod:`agent.model`, :mod:`agent.wire` and :mod:`agent.exports` from the agent, so
the data model, the edge codec and the exporters exist once.
"""
