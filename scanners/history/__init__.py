"""Scan history over the audit period: every scan recorded in a store (SQLite or PostgreSQL).

Modules: urls (which store), store (open, transactions, migrations), models (tables),
recording (record one scan), drift (regressions), intervals (pass/fail intervals of a control),
queries (read the history), period (the audit-period summary), metrics (Prometheus), transfer
(export/import for an auditor).
"""
