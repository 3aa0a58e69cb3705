"""The findings report: readiness per framework, waivers, the diff between scans, every export
format auditors and CI need, and the signed evidence bundle."""

from scanners.report.exports import FORMATS, parse_formats, write_exports
from scanners.report.gate import GateResult, evaluate_gate
from scanners.report.model import Report, build_report

__all__ = ["FORMATS", "GateResult", "Report", "build_report", "evaluate_gate", "parse_formats", "write_exports"]
