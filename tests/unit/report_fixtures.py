"""Findings documents for the report tests, built through real catalog controls.

Controls of areas that have no catalog file yet (TLS, code, containers) are defined in a
temporary catalog next to the shipped one, exactly as their engineers will define them; one
finding uses a control id no catalog has, as a document scanned with another catalog would.
"""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from scanners.catalog import CONTROLS_DIR, Catalog, load_catalog
from scanners.findings import Evidence, Finding, Resource, ResourceKind, Severity, Status
from scanners.findings_file import FindingsDocument, new_document, read_document, write_document
from scanners.period import PeriodSummary, Regression, RequirementPeriod, SeverityPoint
from scanners.report import Report, build_report
from scanners.waivers import load_waivers

SCAN_START = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
TODAY = SCAN_START.date()

EXTRA_CONTROLS = """
area: test-extra
controls:
  - id: TLS-901
    title: TLS endpoints offer only TLS 1.2 and 1.3
    severity: high
    rationale: Old protocol versions have known attacks.
    remediation: Set `ssl_protocols TLSv1.2 TLSv1.3;` in nginx.
    references:
      soc2: [CC6.7]
      iso27001: [A.8.24]
      mozilla-tls: [intermediate]
    check: {type: tls, property: protocols}
  - id: CODE-901
    title: No hard-coded credentials in application code
    severity: medium
    rationale: A password in code ends up in every clone and every image.
    remediation: Read credentials from the environment or a secret store.
    references:
      soc2: [CC6.1]
      iso27001: [A.8.28]
      cwe: [CWE-259]
    check: {type: code}
  - id: CONT-901
    title: Containers do not run privileged
    severity: critical
    rationale: A privileged container is root on the host.
    remediation: "Remove `privileged: true` from docker-compose.yml."
    references:
      cis-docker: ["5.5"]
      soc2: [CC6.1, CC6.8]
      iso27001: [A.8.2]
    check: {type: container_runtime, rule: privileged}
"""

WAIVERS = """
waivers:
  - control: SSH-010
    resources: ["sim-2"]
    justification: The data team tunnels to the warehouse until the VPN lands.
    approver: jane.doe@example.com
    expires: 2027-03-31
  - control: SSH-010
    resources: ["sim-*"]
    justification: Old blanket exception for forwarding.
    approver: bob@example.com
    expires: 2026-10-31
  - control: SSH-021
    resources: ["sim-9"]
    justification: Banner text pending legal review.
    approver: legal@example.com
    expires: 2027-01-31
"""


def build_catalog(tmp_path: Path) -> Catalog:
    directory = tmp_path / "catalog"
    shutil.copytree(CONTROLS_DIR, directory)
    (directory / "test-extra.yml").write_text(EXTRA_CONTROLS)
    return load_catalog(directory)


def host(name: str) -> Resource:
    return Resource(ResourceKind.HOST, host=name)


def fleet_findings(catalog: Catalog, when: datetime = SCAN_START) -> list[Finding]:
    """A small fleet: sim-1 weak, sim-2 partly hardened, sim-3 unreachable."""
    c = catalog.get

    def ssh(cid: str, status: Status, on: str, observed: str, expected: str) -> Finding:
        return c(cid).finding(status, host(on), "host", evidence=Evidence(observed=observed, expected=expected))

    findings = [
        ssh("SSH-001", Status.FAIL, "sim-1", "yes", "no"),
        ssh("SSH-001", Status.PASS, "sim-2", "no", "no"),
        ssh("SSH-004", Status.PASS, "sim-1", "no", "no"),
        ssh("SSH-004", Status.PASS, "sim-2", "no", "no"),
        ssh("SSH-010", Status.FAIL, "sim-1", "yes", "no"),
        ssh("SSH-010", Status.FAIL, "sim-2", "yes", "no"),
        ssh("SSH-021", Status.FAIL, "sim-1", "none", "/etc/issue.net"),
        c("SCAN-001").finding(
            Status.ERROR,
            host("sim-3"),
            "host",
            evidence=Evidence(observed="ssh: connect to host sim-3 port 22: Connection refused", expected="assessed"),
            message="host sim-3 was unreachable",
        ),
        c("TLS-901").finding(
            Status.FAIL,
            Resource(ResourceKind.ENDPOINT, host="sim-1", endpoint="sim-1:443"),
            "tls",
            evidence=Evidence(observed=["TLSv1", "TLSv1.1", "TLSv1.2"], expected=["TLSv1.2", "TLSv1.3"]),
        ),
        c("CODE-901").finding(
            Status.FAIL,
            Resource(ResourceKind.FILE, path="app/tokens.py", line=12),
            "code",
            rule="B105",
            title="Possible hardcoded password: 'admin-token'",
            evidence=Evidence(observed="TOKEN = <redacted>", expected="no literal credential"),
            discriminator="TOKEN = <redacted>",
        ),
        c("CONT-901").finding(
            Status.FAIL,
            Resource(ResourceKind.CONTAINER, host="sim-1", container="montecarlo-web"),
            "containers",
            evidence=Evidence(observed={"Privileged": True}, expected={"Privileged": False}),
        ),
        # Scanned with a catalog version that had this control; today's catalog does not.
        Finding(
            control_id="LEGACY-001",
            title="Legacy telnet service is disabled",
            severity=Severity.LOW,
            status=Status.FAIL,
            resource=host("sim-2"),
            scanner="host",
            evidence=Evidence(observed="active", expected="inactive"),
            remediation="Disable and remove telnetd.",
            references={"soc2": ["CC6.6"], "iso27001": ["A.8.20"], "cis-debian12": ["2.2.4"]},
        ),
    ]
    for f in findings:
        f.observed_at = when
    return findings


def document(catalog: Catalog, findings: list[Finding], *, scan_id: str, started: datetime) -> FindingsDocument:
    doc = new_document(
        catalog,
        id=scan_id,
        started_at=started,
        finished_at=started + timedelta(minutes=3),
        hosts=["sim-1", "sim-2", "sim-3"],
        scanners=["host", "tls", "code", "containers"],
    )
    doc.findings = findings
    doc.components = {"sslyze": "6.3.1", "bandit": "1.9.4"}
    return doc


def written(tmp_path: Path, doc: FindingsDocument, name: str = "findings.json") -> Path:
    """Write through the schema-validating writer and return the path (what a scan leaves)."""
    path = tmp_path / name
    write_document(path, doc)
    return path


def fleet_document(tmp_path: Path) -> tuple[Catalog, Path]:
    catalog = build_catalog(tmp_path)
    path = written(tmp_path, document(catalog, fleet_findings(catalog), scan_id="scan-current", started=SCAN_START))
    return catalog, path


def read(path: Path) -> FindingsDocument:
    return read_document(path)


def period_summary() -> PeriodSummary:
    """A hand-built audit period, as the history store will fill it."""
    first = datetime(2026, 8, 1, 9, 0, tzinfo=UTC)
    return PeriodSummary(
        start=first.date(),
        end=TODAY,
        scans=4,
        requirements=[
            RequirementPeriod("soc2", "CC6.1", scans_assessed=4, scans_passed=3),
            RequirementPeriod("iso27001", "A.8.5", scans_assessed=4, scans_passed=4),
        ],
        regressions=[
            Regression(
                "SSH-001",
                "sim-1",
                "sim-1",
                first + timedelta(days=30),
                "scan-2",
                first + timedelta(days=31, hours=12),
                "scan-3",
            ),
            Regression("SSH-010", "sim-2", "sim-2", first + timedelta(days=60), "scan-3", None, None),
        ],
        severity_series=[
            SeverityPoint(f"scan-{i + 1}", first + timedelta(days=30 * i), {"critical": c, "high": h, "medium": m})
            for i, (c, h, m) in enumerate([(2, 6, 9), (1, 5, 8), (1, 4, 6), (0, 3, 5)])
        ],
    )


def fleet_report(
    tmp_path: Path, *, with_baseline: bool = True, with_period: bool = True, today: date = TODAY
) -> tuple[Report, Path]:
    """The fleet scan with waivers, a baseline a month earlier and an audit period."""
    catalog, path = fleet_document(tmp_path)
    (tmp_path / "waivers.yml").write_text(WAIVERS)
    baseline = None
    if with_baseline:
        earlier = [f for f in fleet_findings(catalog) if f.control_id not in ("SSH-021", "TLS-901")]
        earlier.append(catalog.get("SSH-002").finding(Status.FAIL, host("sim-1"), "host"))
        baseline = written(
            tmp_path,
            document(catalog, earlier, scan_id="scan-baseline", started=SCAN_START - timedelta(days=30)),
            "baseline.json",
        )
    report = build_report(
        read(path),
        waivers=load_waivers(tmp_path / "waivers.yml", catalog),
        baseline=read(baseline) if baseline else None,
        period=period_summary() if with_period else None,
        today=today,
        catalog=catalog,
    )
    return report, path
