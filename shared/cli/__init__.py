"""The `mlops` command line: one console script over the platform's HTTP APIs and Kafka."""
