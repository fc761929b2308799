"""Producers that watch other systems' records of traffic and report what they saw to the mapper.

The Kafka watcher (:mod:`.kafkawatcher`) reads Kafka's authorizer log lines (parsed by
:mod:`.kafka`) from pod logs or files; the Istio watcher (:mod:`.istiowatcher`) scrapes sidecars'
``istio_requests_total``. Both reach the mapper only over its GraphQL API
(:mod:`agent.mapperclient`), batched and retried by :mod:`agent.reporter`.
"""
