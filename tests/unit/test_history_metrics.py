"""`preaudit metrics`: the latest scan in the Prometheus text format, parsed back by prometheus_client's parser."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from scanners import __version__
from scanners.catalog import CATALOG_VERSION
from scanners.errors import InputError
from scanners.history.metrics import render_metrics, write_metrics
from scanners.history.recording import record_scan
from scanners.history.store import open_store
from tests.history_support import FAIL, PASS, at, scan

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _samples(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _record_two_scans(url: str) -> None:
    with open_store(url) as store:
        record_scan(store, scan("s1", at(0), {("SSH-001", "sim-1"): PASS, ("SSH-002", "sim-1"): PASS}))
        latest = scan(
            "s2",
            at(24),
            {
                ("SSH-001", "sim-1"): PASS,
                ("SSH-001", "sim-2"): PASS,
                ("SSH-002", "sim-1"): FAIL,  # passed in s1: a regression
                ("SSH-002", "sim-2"): PASS,
            },
            hosts=["sim-1", "sim-2", "sim-3"],  # sim-3 was scanned and has nothing failing
        )
        record_scan(store, latest)


def test_metrics_of_the_latest_scan(store_url: str) -> None:
    _record_two_scans(store_url)
    with open_store(store_url, create=False) as store:
        samples = _samples(render_metrics(store).decode())

    info = (("catalog_version", CATALOG_VERSION), ("scan_id", "s2"), ("tool_version", __version__))
    assert samples[("preaudit_scan_info", info)] == 1
    assert samples[("preaudit_scan_start_timestamp_seconds", ())] == at(24).timestamp()
    assert samples[("preaudit_scan_complete", ())] == 1
    assert samples[("preaudit_regressions", ())] == 1
    assert samples[("preaudit_findings", (("status", "pass"),))] == 3
    assert samples[("preaudit_findings", (("status", "fail"),))] == 1
    assert samples[("preaudit_failing_findings", (("severity", "high"),))] == 1
    assert samples[("preaudit_failing_findings", (("severity", "critical"),))] == 0
    assert samples[("preaudit_failing_findings_by_host", (("host", "sim-1"), ("severity", "high")))] == 1
    assert samples[("preaudit_failing_findings_by_host", (("host", "sim-2"), ("severity", "high")))] == 0
    assert samples[("preaudit_failing_findings_by_host", (("host", "sim-3"), ("severity", "high")))] == 0
    # SSH-002 names SOC 2, ISO 27001 and NIST requirements, no CIS benchmark.
    by_framework = {
        labels[0][1]: value
        for (name, labels), value in samples.items()
        if name == "preaudit_failing_findings_by_framework"
    }
    assert by_framework == {"soc2": 1, "iso27001": 1, "nist-800-53": 1, "cis-debian12": 0, "cis-docker": 0}
    # SOC 2: CC6.1 fails (SSH-002), CC6.3 passes (SSH-001 only). ISO: A.8.2 passes; A.8.5 and
    # A.5.17 fail. CIS Debian: 5.1.20 (SSH-001) passes.
    readiness = {labels[0][1]: value for (name, labels), value in samples.items() if name == "preaudit_readiness_ratio"}
    assert readiness == pytest.approx({"soc2": 0.5, "iso27001": 1 / 3, "cis-debian12": 1.0, "nist-800-53": 1 / 3})
    assert samples[("preaudit_requirements_assessed", (("framework", "iso27001"),))] == 3
    assert samples[("preaudit_requirements_passed", (("framework", "iso27001"),))] == 1
    assert samples[("preaudit_requirements_assessed", (("framework", "cis-docker"),))] == 0


def test_metrics_file_is_written_atomically_for_the_textfile_collector(tmp_path: Path) -> None:
    url = str(tmp_path / "h.sqlite")
    _record_two_scans(url)
    out = tmp_path / "textfile" / "preaudit.prom"
    out.parent.mkdir()
    out.write_text("old content\n")
    with open_store(url, create=False) as store:
        write_metrics(store, out)
    assert _samples(out.read_text())[("preaudit_regressions", ())] == 1
    # Only the final file: no temporary file a collector could pick up (it reads *.prom).
    assert sorted(p.name for p in out.parent.iterdir()) == ["preaudit.prom"]


def test_metrics_of_an_empty_store_is_an_input_error(tmp_path: Path) -> None:
    with open_store(str(tmp_path / "h.sqlite")) as store, pytest.raises(InputError, match="holds no scans yet"):
        render_metrics(store)
