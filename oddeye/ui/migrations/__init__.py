"""Alembic migrations of the review store, run programmatically by oddeye.ui.store.open_store."""
