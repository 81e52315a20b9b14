"""The registry's logic without I/O: promotion policy, rollback choice, version comparison."""
