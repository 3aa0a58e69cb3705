"""The findings report: readiness per framework, waivers, the diff between scans, every export
format auditors and CI need, and the signed evidence bundle.

The API the scan pipeline calls::

    report = build_report(document, waivers=..., baseline=..., period=..., today=...)
    paths = write_exports(report, out_dir, ["html", "json", "csv", "sarif", "junit", "ocsf"])
    write_bundle(bundle_path, report=report, exports=paths, signing_key=load_private_key(key_path))
    verify_bundle(bundle_path, public_key=load_public_key(pub_path))
"""

from scanners.report.bundle import BundleInfo, Verification, verify_bundle, write_bundle
from scanners.report.exports import FORMATS, parse_formats, write_exports
from scanners.report.gate import GateResult, evaluate_gate
from scanners.report.keys import generate_keypair, load_private_key, load_public_key
from scanners.report.model import Report, build_report

__all__ = [
    "FORMATS",
    "BundleInfo",
    "GateResult",
    "Report",
    "Verification",
    "build_report",
    "evaluate_gate",
    "generate_keypair",
    "load_private_key",
    "load_public_key",
    "parse_formats",
    "verify_bundle",
    "write_bundle",
    "write_exports",
]
