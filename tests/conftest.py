"""Fixtures shared across test directories, registered once per session (a session-scoped
fixture imported into several modules would otherwise start once per module)."""

pytest_plugins = ["tests.postgres_server", "tests.history_support"]
