"""Alembic revision scripts of the review store (one file per schema version)."""
