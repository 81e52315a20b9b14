"""The feature store's settings: MLOPS_FEATURE_STORE_* variables (the platform's are MLOPS_*)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import STACK_ENV_FILE, ServiceSettings


class FeatureStoreSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="MLOPS_FEATURE_STORE_", env_file=STACK_ENV_FILE, extra="ignore", frozen=True
    )

    port: int = Field(8003, ge=1, le=65535)
    max_body_bytes: int = Field(
        8 * 1_048_576,
        gt=0,
        description="Largest request body (a batch lookup of serving's max_records long keys).",
    )
    bucket: str = Field(
        "mlops-offline", min_length=3, max_length=63, description="Offline store and sets."
    )
    sqlite_path: str = Field(
        ".local/data/feature_store.sqlite",
        description="The online store's SQLite file when MLOPS_DATABASE_URL is not set.",
    )
    batch_max_records: int = Field(
        500, ge=1, description="Records the stream computes, publishes and saves at a time."
    )
    batch_within_s: float = Field(
        0.1, gt=0, description="How long the stream waits to fill a batch before computing it."
    )
    window_grace_s: int = Field(
        86_400,
        ge=0,
        description="How long after an entity's latest event time its closed windows are kept "
        "for records arriving out of order.",
    )
    offline_flush_rows: int = Field(
        5000, ge=1, description="An offline file is written every this many messages..."
    )
    offline_flush_s: float = Field(
        10.0, gt=0, description="...or when its oldest row has waited this long."
    )
    lookup_cache_entries: int = Field(
        100_000,
        ge=0,
        description="Latest vectors kept in memory for lookups (0: every lookup reads SQL).",
    )
    lookup_cache_ttl_s: float = Field(
        30.0,
        ge=0,
        description="How long a cached vector answers lookups; with several workers, the "
        "most a lookup can lag another worker's write (one worker: never stale).",
    )
    max_lookup_entities: int = Field(
        1000, ge=1, description="Entities one POST /features/{dataset}/batch may ask for."
    )
    session_timeout_s: float = Field(
        10.0,
        ge=6,
        description="A stream worker that stopped answering leaves its group after this long; "
        "a restarted one waits as long for its partitions.",
    )
    commit_interval_s: float = Field(
        2.8, gt=0, description="How often the stream commits the offsets it has acknowledged."
    )
    stall_timeout_s: float = Field(
        120.0,
        ge=10,
        description="Records wait on a worker's partitions, no batch is in progress and the "
        "stream has not moved for this long: the worker exits so that its supervisor restarts "
        "it (faust can stop feeding its agent after a rebalance without a word).",
    )
    retry_max_backoff_s: float = Field(
        5.0, gt=0, description="Longest wait between two attempts to publish or store a batch."
    )
    rebuild_read_timeout_s: float = Field(
        30.0,
        gt=0,
        description="POST /training-sets/rebuild: how long Kafka may stay silent while a range "
        "it holds is read before the rebuild fails (503).",
    )
