"""Fixture: a documented example value, marked so the scanner must not report it."""

EXAMPLE_TOKEN = "ghp_FAKEallowlistedEXAMPLE00000000000000"  # pragma: allowlist secret
