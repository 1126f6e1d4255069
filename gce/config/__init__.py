"""Endpoint configuration: locations, schema, loading and validation (pure code, no daemons)."""
