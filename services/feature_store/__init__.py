"""The feature store: streaming windowed aggregates (faust), the online store (SQL), the
offline store (Parquet in MinIO) and point-in-time-correct training sets.

    python -m services.feature_store
"""
