"""The cloud's graph stores: one interface (:class:`~cloud_functions.store.base.GraphStore`), two
implementations: SQLite (:mod:`cloud_functions.store.sqlite`, embedded, the default) and DynamoDB
(:mod:`cloud_functions.store.dynamodb`, for AWS; it imports botocore).
"""
