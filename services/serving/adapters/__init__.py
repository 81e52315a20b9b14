"""Serving's thin adapters: the registry and feature store over HTTP, MinIO, Kafka."""
