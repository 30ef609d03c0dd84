"""Persistence: engine and unit of work, models, migrations."""
