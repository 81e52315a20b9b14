"""Monitoring adapters: SQL history and decision log."""
