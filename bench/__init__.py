"""Benchmarks, run as scripts (`.venv/bin/python bench/NAME.py`); a package so that module names stay unique."""
