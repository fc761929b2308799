"""The cloud's graph stores: one interface (:class:`GraphStore`), two implementations.

:class:`SqliteGraphStore` (``cloud_functions.store.sqlite``) is the embedded default;
:class:`DynamoGraphStore` (``cloud_functions.store.dynamodb``, imports boto3's botocore) is for AWS.
"""

from cloud_functions.store.base import (
    MAX_TELEMETRY_BYTES,
    Cluster,
    Conflict,
    GraphStore,
    IngestResult,
    Invalid,
    NotFound,
    Role,
    StoredEdge,
    StoreError,
    Tenant,
    TokenRecord,
)
from cloud_functions.store.sqlite import SqliteGraphStore

__all__ = [
    "MAX_TELEMETRY_BYTES",
    "Cluster",
    "Conflict",
    "GraphStore",
    "IngestResult",
    "Invalid",
    "NotFound",
    "Role",
    "SqliteGraphStore",
    "StoreError",
    "StoredEdge",
    "Tenant",
    "TokenRecord",
]
