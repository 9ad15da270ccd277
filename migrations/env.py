"""Alembic environment. kbbot runs migrations programmatically (`retrieval.db.Database.migrate`), passing
an open connection in `config.attributes["connection"]`; the URL path is for `alembic` used by hand."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

config = context.config


def run_migrations() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as conn:
        context.configure(connection=conn, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("kbbot migrations need a live database: run `kbbot migrate`.")
run_migrations()
