"""Alembic environment: runs migrations on the URL set by idp.db.migrate."""

from alembic import context

from idp.db.engine import make_engine
from idp.db.models import Base

config = context.config
engine = make_engine(config.get_main_option("sqlalchemy.url"))

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
