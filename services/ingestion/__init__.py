"""Ingestion: takes records (HTTP batches and files), labels and dataset specs, and writes them
to data.raw, data.labels and data.specs, answering only once Kafka confirmed every write.

It applies no rule of a spec (validation does, and says why it rejects); it refuses only what is
not a batch of records. Records may also go straight to data.raw from any Kafka client.
"""
