"""The registry's adapters: SQL storage and its migrations, Kafka publishing."""
