"""Ingestion's adapters: Kafka (publisher, spec catalog, shipped-spec registration) and files."""
