"""Thin adapters: faust (streaming state), SQL (online store), MinIO (offline store), Kafka."""
