"""Training's adapters: the feature store and registry over HTTP, MinIO, SQL, Kafka."""
