"""Shared pytest configuration."""

pytest_plugins = ["evolink_async.testing.pytest_plugin", "pg_support"]
