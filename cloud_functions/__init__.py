"""The cloud backend of network-mapper: Lambda handlers, the per-tenant graph stores and the console.

It imports only :mod:`agent.model` and :mod:`agent.exports` from the agent, so the data model and
the exporters exist once.
"""
