"""preaudit: hardening roles and pre-audit scanners for SOC 2 / ISO 27001 readiness."""

__version__ = "0.1.0"
