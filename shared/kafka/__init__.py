"""Kafka adapters shared by every service: producer, consumer runner, topics."""
