"""HTTP layer: litestar controllers, templates and static files."""
