"""The reference online store for `make bench-data`: Feast's SQLite online store, served by
`feast serve`. Runs inside its own virtualenv (Feast pins pandas<3), started by bench_data.

    python feast_reference.py --features FILE.parquet --entity-column C --repo DIR --port P

Applies a feature repo over the Parquet file, materializes it into SQLite, then serves it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
from feast import Entity, FeatureStore, FeatureView, Field, FileSource
from feast.types import Float64, Int64, String
from feast.value_type import ValueType

FEATURE_STORE_YAML = """project: bench
registry: {registry}
provider: local
online_store:
  type: sqlite
  path: {online}
offline_store:
  type: file
entity_key_serialization_version: 3
"""


def feast_type(series: pd.Series) -> object:
    if pd.api.types.is_integer_dtype(series):
        return Int64
    if pd.api.types.is_float_dtype(series):
        return Float64
    return String


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--features", type=Path, required=True)
    parser.add_argument("--entity-column", required=True)
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()

    args.repo.mkdir(parents=True, exist_ok=True)
    (args.repo / "feature_store.yaml").write_text(
        FEATURE_STORE_YAML.format(
            registry=args.repo / "registry.db", online=args.repo / "online.db"
        )
    )
    frame = pd.read_parquet(args.features)
    entity = Entity(name="entity", join_keys=[args.entity_column], value_type=ValueType.STRING)
    source = FileSource(path=str(args.features.resolve()), timestamp_field="event_timestamp")
    columns = [c for c in frame.columns if c not in (args.entity_column, "event_timestamp")]
    view = FeatureView(
        name="features",
        entities=[entity],
        ttl=timedelta(days=3650),
        schema=[Field(name=c, dtype=feast_type(frame[c])) for c in columns],
        source=source,
    )
    store = FeatureStore(repo_path=str(args.repo))
    store.apply([entity, view])
    end = datetime.now(UTC) + timedelta(days=1)
    store.materialize(start_date=end - timedelta(days=3650), end_date=end)
    print(f"feast: {len(frame)} rows materialized; serving on {args.port}", flush=True)
    subprocess.run(
        [str(Path(sys.executable).parent / "feast"), "-c", str(args.repo), "serve",
         "--host", "127.0.0.1", "--port", str(args.port), "--no-access-log"],
        check=True,
    )  # fmt: skip


if __name__ == "__main__":
    main()
