"""Alembic revision scripts (a package so installs ship them; Alembic skips this file)."""
