"""Ingestion's own logic: parsing requests into rows and labels, and the use cases that turn
them into events, written through ports (a spec catalog, a publisher) injected by bootstrap."""
