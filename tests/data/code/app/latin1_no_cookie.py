"""Fixture: Latin-1 bytes without a coding cookie, so not valid Python source."""
NAME = "café"
