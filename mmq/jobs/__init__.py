"""Ingest jobs in PostgreSQL: what producers accepted, and how every item ended."""
