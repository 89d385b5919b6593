"""Alembic migrations of the review store, run programmatically by oddeye.store.api.open_store."""
