"""Alembic environment: migrate the connection oddeye.store.api hands over (config.attributes['connection'])."""

from alembic import context

from oddeye.store.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
