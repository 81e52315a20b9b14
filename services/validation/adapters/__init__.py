"""Validation's adapters: the SQL record-id store."""
