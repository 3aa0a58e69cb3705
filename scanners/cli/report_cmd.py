"""`preaudit report`, `preaudit verify-bundle` and `preaudit keys generate`."""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

from scanners.catalog import default_catalog
from scanners.errors import EXIT_FINDINGS, EXIT_OK, EXIT_REGRESSION, InputError
from scanners.findings import Severity
from scanners.findings_file import read_document
from scanners.frameworks import READINESS_FRAMEWORKS
from scanners.report import (
    FORMATS,
    build_report,
    evaluate_gate,
    generate_keypair,
    load_private_key,
    load_public_key,
    parse_formats,
    verify_bundle,
    write_bundle,
    write_exports,
)
from scanners.report.exports import planned_paths
from scanners.report.keys import PASSPHRASE_ENV, passphrase_from_env
from scanners.waivers import load_waivers


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    report = sub.add_parser(
        "report",
        help="render a findings document for auditors and CI (HTML, JSON, CSV, SARIF, JUnit, OCSF)",
        description="Apply waivers, diff against a baseline, score readiness and write the exports.",
    )
    report.add_argument("findings", type=Path, metavar="FINDINGS", help="findings document (JSON) of a scan")
    report.add_argument("--out", type=Path, default=Path("report"), help="output directory (default: ./report)")
    report.add_argument(
        "--format",
        default="all",
        help=f"comma-separated formats: {','.join(FORMATS)} or all (default: all)",
    )
    report.add_argument("--baseline", type=Path, metavar="OLD", help="an earlier findings document to diff against")
    report.add_argument("--waivers", type=Path, metavar="FILE", help="waiver file (YAML)")
    report.add_argument(
        "--framework",
        metavar="NAME",
        help=f"comma-separated frameworks to score: {','.join(READINESS_FRAMEWORKS)} (default: all)",
    )
    report.add_argument("--fail-on", metavar="SEVERITY", help="exit 1 if a failing finding is at or above SEVERITY")
    report.add_argument("--fail-on-new", action="store_true", help="exit 1 if the diff has new failing findings")
    report.add_argument(
        "--today", metavar="YYYY-MM-DD", help="judge waiver expiry as of this day (default: today, UTC)"
    )
    report.add_argument("--bundle", type=Path, metavar="OUT.tar.gz", help="also write a signed evidence bundle")
    report.add_argument(
        "--signing-key", type=Path, metavar="KEY", help=f"Ed25519 private key (PEM); see {PASSPHRASE_ENV}"
    )
    report.add_argument("--raw", type=Path, metavar="DIR", help="raw scanner outputs to put into the bundle")
    report.add_argument(
        "--period",
        metavar="START..END",
        help="add the 'over the audit period' section from the history store (UTC dates, both included)",
    )
    report.add_argument("--store", metavar="URL", help="history store for --period (default: $PREAUDIT_STORE)")
    report.add_argument(
        "--fail-on-regression",
        action="store_true",
        help=f"exit {EXIT_REGRESSION} when a finding that passed (or was waived) in --baseline fails now",
    )
    report.set_defaults(func=_report)

    verify = sub.add_parser(
        "verify-bundle",
        help="check an evidence bundle's signature and every file in it",
        description="Exit 0 when the bundle is intact, 1 when anything was added, removed or modified.",
    )
    verify.add_argument("bundle", type=Path, metavar="BUNDLE")
    verify.add_argument(
        "--public-key", type=Path, metavar="PUB", help="the signer's public key, obtained separately (recommended)"
    )
    verify.set_defaults(func=_verify)

    keys = sub.add_parser("keys", help="manage evidence bundle signing keys")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="ACTION")
    keys_sub.required = True
    generate = keys_sub.add_parser(
        "generate",
        help="create an Ed25519 key pair",
        description=f"Write preaudit-signing.key (0600) and preaudit-signing.pub. The private key is "
        f"encrypted when {PASSPHRASE_ENV} is set.",
    )
    generate.add_argument("--out", type=Path, required=True, metavar="DIR", help="directory for the key pair")
    generate.set_defaults(func=_generate)


def _parse_today(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InputError(f"--today {value!r} is not a date (YYYY-MM-DD)") from None


def _parse_severity(value: str | None) -> Severity | None:
    if value is None:
        return None
    try:
        return Severity.parse(value)
    except ValueError as exc:
        raise InputError(f"--fail-on: {exc}") from None


def _refuse_overwriting_inputs(args: argparse.Namespace, formats: list[str]) -> None:
    """An export written over its own input (report out/findings.json --out out) loses the scan."""
    inputs = {p.resolve(): p for p in (args.findings, args.baseline, args.waivers, args.signing_key) if p is not None}
    outputs = planned_paths(args.out, formats) + ([args.bundle] if args.bundle is not None else [])
    for output in outputs:
        if output.resolve() in inputs:
            raise InputError(f"{output} would overwrite the input {inputs[output.resolve()]}: choose another --out")


def _report(args: argparse.Namespace) -> int:
    # Validate every argument before reading or writing anything.
    formats = parse_formats(args.format)
    today = _parse_today(args.today)
    fail_on = _parse_severity(args.fail_on)
    frameworks = [k.strip() for k in args.framework.split(",") if k.strip()] if args.framework else None
    if args.fail_on_new and args.baseline is None:
        raise InputError("--fail-on-new needs --baseline")
    if args.fail_on_regression and args.baseline is None:
        raise InputError("--fail-on-regression needs --baseline")
    if args.store and not args.period:
        raise InputError("--store is only read for --period")
    period_range = None
    if args.period:
        # The history store (SQLAlchemy, alembic) is imported only when needed: it slows start-up.
        from scanners.history.period import parse_period

        period_range = parse_period(args.period)
    if (args.signing_key or args.raw) and args.bundle is None:
        raise InputError("--signing-key and --raw only make sense with --bundle")
    _refuse_overwriting_inputs(args, formats)
    signing_key = None
    if args.bundle is not None:
        if args.signing_key is None:
            raise InputError("--bundle needs --signing-key (create one with `preaudit keys generate`)")
        signing_key = load_private_key(args.signing_key)

    catalog = default_catalog()
    document = read_document(args.findings)
    baseline = read_document(args.baseline) if args.baseline else None
    waivers = load_waivers(args.waivers, catalog) if args.waivers else None
    period = None
    if period_range is not None:
        from scanners.history.period import build_period_summary
        from scanners.history.store import open_store

        with open_store(args.store, create=False) as store:
            period = build_period_summary(store, *period_range)
    report = build_report(
        document,
        waivers=waivers,
        baseline=baseline,
        period=period,
        today=today,
        frameworks=frameworks,
        catalog=catalog,
    )
    written = write_exports(report, args.out, formats)
    for path in written:
        print(f"wrote {path}")
    if signing_key is not None:
        inputs = {"findings.json": args.findings}
        if args.baseline:
            inputs["baseline.json"] = args.baseline
        if args.waivers:
            inputs["waivers.yml"] = args.waivers
        info = write_bundle(
            args.bundle, report=report, exports=written, signing_key=signing_key, inputs=inputs, raw_dir=args.raw
        )
        print(f"wrote {info.path} ({info.files} files, signed by {info.key_fingerprint})")

    print(f"readiness: overall {report.readiness.overall.label()}", end="")
    print("".join(f"; {fr.key} {fr.score.label()}" for fr in report.readiness.frameworks))
    if report.diff:
        counts = report.diff.counts
        print(
            f"since baseline: {counts['new']} new, {counts['fixed']} fixed, "
            f"{counts['regressed']} regressed, {counts['unchanged']} unchanged"
        )
    if report.waivers.expired:
        print(f"expired waivers: {len(report.waivers.expired)} (their findings fail again)")
    gate = evaluate_gate(report.findings, report.diff, fail_on=fail_on, fail_on_new=args.fail_on_new)
    for reason in gate.reasons:
        print(f"preaudit: failing: {reason}", file=sys.stderr)
    if args.fail_on_regression and report.diff and report.diff.counts["regressed"]:
        print(f"preaudit: failing: {report.diff.counts['regressed']} regression(s) since the baseline", file=sys.stderr)
        return EXIT_REGRESSION
    return gate.exit_code


def _verify(args: argparse.Namespace) -> int:
    public_key = load_public_key(args.public_key) if args.public_key else None
    result = verify_bundle(args.bundle, public_key)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if result.ok:
        print(
            f"OK: {args.bundle}: {result.files_checked} files match the manifest, signature valid "
            f"({result.key_source} key {result.key_fingerprint})"
        )
        return EXIT_OK
    for problem in result.problems:
        print(f"FAIL: {problem}")
    print(f"preaudit: bundle {args.bundle} failed verification ({len(result.problems)} problem(s))", file=sys.stderr)
    return EXIT_FINDINGS


def _generate(args: argparse.Namespace) -> int:
    pair = generate_keypair(args.out, passphrase=passphrase_from_env())
    print(f"private key: {pair.private_path} (mode 0600, {'encrypted' if pair.encrypted else 'NOT encrypted'})")
    print(f"public key:  {pair.public_path}")
    print(f"fingerprint: {pair.fingerprint}")
    return EXIT_OK
