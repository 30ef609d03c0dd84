"""Alembic migrations; run them with ``idp db upgrade``."""
