"""The model registry: model versions, aliases, the promotion policy and the audit trail."""
