"""The console: server-rendered pages over the other services' HTTP APIs, Kafka's admin API and
Jaeger's query API."""
