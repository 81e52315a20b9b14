"""Serving's settings: MLOPS_SERVING_* variables (the platform's are MLOPS_*)."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from shared.events.models import MODEL_NAME
from shared.settings import STACK_ENV_FILE, ServiceSettings, service_url


class ServingSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="MLOPS_SERVING_", env_file=STACK_ENV_FILE, extra="ignore", frozen=True
    )

    port: int = Field(8006, ge=1, le=65535)
    max_body_bytes: int = Field(
        16 * 1_048_576,
        gt=0,
        description="Largest /predict body (max_records wide records fit); larger: 413.",
    )
    models: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Restricts the models served, as JSON (a list of names); unset or empty "
        "(the default): every model that has a champion, found at runtime.",
    )
    registry_url: str = Field(
        default_factory=lambda: service_url("registry"), description="The model registry's API."
    )
    feature_store_url: str = Field(
        default_factory=lambda: service_url("feature_store"),
        description="The feature store's API (online lookups).",
    )
    shadow: bool = Field(
        False,
        description="The 'challenger' alias also scores live traffic, logged, never returned.",
    )
    group_id: str | None = Field(
        None,
        description="Consumer group on models.lifecycle; default <namespace>.serving.<random>: "
        "every replica must see every promotion.",
    )
    registry_timeout_s: float = Field(5.0, gt=0, description="Per request to the registry.")
    feature_store_timeout_s: float = Field(2.0, gt=0, description="Per lookup in the online store.")
    champion_retry_s: float = Field(
        2.0,
        gt=0,
        description="How often a model without champion is asked for again, and a version "
        "that could not load (registry, MinIO or Kafka down) is tried again.",
    )
    model_memory_mb: float = Field(
        2048.0,
        gt=0,
        description="Memory the loaded models may hold, in MB (their retained object graph, "
        "measured after each load). Champions load on their first request; loading one that "
        "would exceed it evicts the least recently used models without a request in flight.",
    )
    max_loaded_models: int | None = Field(
        None, ge=1, description="At most this many models in memory at once (unset: no cap)."
    )
    model_load_timeout_s: float = Field(
        30.0,
        gt=0,
        description="How long a request waits for its model to load before a 503 (the load "
        "goes on; the next request joins it).",
    )
    load_threads: int = Field(
        2, ge=1, description="Models loaded on request at once (different models)."
    )
    max_records: int = Field(1000, ge=1, description="Largest batch of records or entities.")
    max_batch_rows: int = Field(
        512, ge=1, description="Most rows concurrent requests may share in one predict call."
    )
    batch_wait_ms: float = Field(
        2.0,
        ge=0,
        description="How long a batch may wait for the requests recent batches had "
        "(a lone client never waits; 0: score whatever is there).",
    )
    predict_threads: int = Field(
        1,
        ge=1,
        description="Native threads (OpenMP, BLAS) per predict call. Batching gives the "
        "parallelism; more threads on small batches mostly spin against the HTTP loop.",
    )
    log_queue_size: int = Field(
        200_000, ge=1, description="Predictions waiting for Kafka before new ones are dropped."
    )

    @field_validator("models", mode="before")
    @classmethod
    def _json_list(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        if not value.strip():
            return []
        try:
            return json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(
                f'expected a JSON list of model names such as ["iris"]: {error}'
            ) from None

    @field_validator("models")
    @classmethod
    def _valid_names(cls, names: list[str]) -> list[str]:
        bad = [name for name in names if not re.match(MODEL_NAME, name)]
        if bad:
            raise ValueError(f"not model names (expected {MODEL_NAME}): {bad}")
        if len(set(names)) != len(names):
            raise ValueError(f"a model is named twice: {names}")
        return names

    @field_validator("registry_url", "feature_store_url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"expected an http(s) URL, got {url!r}")
        return url.rstrip("/")
