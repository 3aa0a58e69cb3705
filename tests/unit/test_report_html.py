"""The HTML report: self-contained, escaped, and readable in a real headless Chromium."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import html as html_lib
import re
import shutil
import struct
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from scanners.findings import Resource, ResourceKind, Severity, Status
from scanners.report import Report, write_exports
from scanners.report.charts import SEVERITY_COLOURS
from scanners.report.export_html import render_html
from tests.unit.report_fixtures import fleet_report

XSS_TITLE = "<script>alert('title')</script>"
XSS_HOST = '"><img src=x onerror=alert(1)>'


@pytest.fixture
def report(tmp_path: Path) -> Report:
    return fleet_report(tmp_path)[0]


def test_html_is_self_contained_and_pinned_by_its_csp(report: Report) -> None:
    html = render_html(report)
    assert "http://" not in html and "https://" not in html
    assert not re.search(r"<(link|img|iframe|object|embed)\b", html)
    assert not re.search(r"\ssrc\s*=", html)  # no script, image or frame is loaded from anywhere
    csp = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', html)
    assert csp is not None
    policy = html_lib.unescape(csp.group(1))  # attribute values are escaped like everything else
    assert policy.startswith("default-src 'none'")
    style = re.search(r"<style>(.*?)</style>", html, re.S)
    script = re.search(r"<script>(.*?)</script>", html, re.S)
    assert style is not None and script is not None
    for kind, body in (("style-src", style.group(1)), ("script-src", script.group(1))):
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"{kind} 'sha256-{digest}'" in policy
    assert len(re.findall(r"<script>", html)) == 1


def test_everything_from_findings_is_escaped(report: Report) -> None:
    hostile = dataclasses.replace(
        report.findings[0],
        title=XSS_TITLE,
        message="</td></tr><tr><td>injected",
        resource=Resource(ResourceKind.HOST, host=XSS_HOST),
    )
    html = render_html(dataclasses.replace(report, findings=(hostile, *report.findings[1:])))
    assert XSS_TITLE not in html and XSS_HOST not in html and "</td></tr><tr><td>injected" not in html
    assert "&lt;script&gt;alert(&#39;title&#39;)&lt;/script&gt;" in html
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in html


def test_a_discovered_files_finding_says_where_discovery_found_it(report: Report) -> None:
    first = report.findings[0]
    source = "systemd:app.service EnvironmentFile= /etc/systemd/system/app.service:7"
    evidence = dataclasses.replace(first.evidence, details={**first.evidence.details, "source": source})
    found = dataclasses.replace(first, resource=Resource(ResourceKind.FILE, host="sim-1", path="/srv/app/.env"))
    found = dataclasses.replace(found, evidence=evidence)
    html = render_html(dataclasses.replace(report, findings=(found, *report.findings[1:])))
    assert f'<td>sim-1:/srv/app/.env<br><span class="muted source">found via {source}</span></td>' in html
    assert html.count("found via") == 1


def test_the_header_names_the_vulnerability_database_snapshot(report: Report) -> None:
    assert "Vulnerability database" not in render_html(report)  # a scan without the dependency scanner
    snapshot = {
        "source": "pypa-advisory-database-3ccb612.tar.gz", "kind": "pypa-advisory-database",
        "commit": "3ccb612", "date": "2026-10-30", "advisories": 5873, "packages": 2211,
        "imported_at": "2026-11-20T08:00:00Z", "path": "/somewhere/vulndb",
    }  # fmt: skip
    scan = dataclasses.replace(report.document.scan, vulndb=snapshot)
    html = render_html(dataclasses.replace(report, document=dataclasses.replace(report.document, scan=scan)))
    assert (
        "Vulnerability database: pypa-advisory-database pypa-advisory-database-3ccb612.tar.gz at "
        "<code>3ccb612</code> (5873 advisories for 2211 packages, newest 2026-10-30)"
    ) in html
    assert "/somewhere/vulndb" not in html  # the machine's path stays out of the report


def _chart(html: str, title: str) -> str:
    start = html.index(f'<svg class="chart" role="img" aria-label="{title}"')
    return html[start : html.index("</svg>", start)]


def test_charts_draw_the_failing_findings_and_the_requirements_they_count(report: Report) -> None:
    html = render_html(report)
    failing = Counter(f.severity.value for f in report.findings if f.is_problem)
    assert sum(failing.values()) > 0 and len(failing) > 1
    severity = _chart(html, "Failing findings by severity")
    # One labelled bar per severity, its count printed after it, widths in proportion to the counts.
    bars = re.findall(r'<rect x="110" y="\d+" width="(\d+)" height="20" fill="(#[0-9a-f]+)"/>', severity)
    counts = [int(n) for n in re.findall(r">(\d+)</text>", severity)]
    assert counts == [failing.get(s.value, 0) for s in Severity]
    widest = max(int(w) for w, _ in bars)
    for (width, colour), count, level in zip(bars, counts, Severity, strict=True):
        assert colour == SEVERITY_COLOURS[level.value]
        assert abs(int(width) - widest * count / max(counts)) <= 1
    frameworks = _chart(html, "Requirements by status, per framework")
    for framework in report.readiness.frameworks:
        assert f">{framework.key}</text>" in frameworks
    segments = [(status, int(n)) for status, n in re.findall(r"<title>(\w+): (\d+)</title>", frameworks)]
    assert sum(n for _, n in segments) == sum(len(fr.requirements) for fr in report.readiness.frameworks)
    expected = Counter(r.status for fr in report.readiness.frameworks for r in fr.requirements)
    drawn: Counter[str] = Counter()
    for status, n in segments:
        drawn[status] += n
    assert drawn == expected


def test_period_section_renders_shares_regressions_and_a_chart(report: Report) -> None:
    html = render_html(report)
    section = html[html.index('<section id="period">') : html.index('<section id="findings">')]
    assert "Audit period 2026-08-01 to 2026-11-20 (4 scans)" in section
    assert "75.0%" in section and "100.0%" in section  # CC6.1 passed 3 of 4 scans, A.8.5 4 of 4
    assert "36.0" in section and "still failing" in section
    assert "2026-08-31 09:00 UTC" in section and "2026-09-01 21:00 UTC" in section
    assert section.count("<polyline") == 5  # one line per severity
    without = render_html(dataclasses.replace(report, period=None))
    assert '<section id="period">' not in without


# --- in a real browser ---------------------------------------------------------------------------


def _program(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: run scripts/setup.sh (Debian packages chromium chromium-driver)")
    return found


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = _program("chromium")
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1400,1000",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=_program("chromedriver")))
    try:
        yield driver
    finally:
        driver.quit()


def _visible_rows(driver: WebDriver) -> list[str]:
    rows = driver.find_elements(By.CSS_SELECTOR, "#findings-table tbody tr.finding")
    return [r.get_attribute("id") or "" for r in rows if r.is_displayed()]


def _png_size_and_colours(png: bytes) -> tuple[int, int, int]:
    """Width, height and the number of distinct byte values in the decoded pixel rows."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    data, offset = b"", 8
    while offset < len(png):
        length = struct.unpack(">I", png[offset : offset + 4])[0]
        kind = png[offset + 4 : offset + 8]
        if kind == b"IDAT":
            data += png[offset + 8 : offset + 8 + length]
        offset += 12 + length
    return width, height, len(set(zlib.decompress(data)))


def test_a_reader_sees_scores_findings_filters_waivers_and_the_diff(
    report: Report, browser: WebDriver, tmp_path: Path
) -> None:
    (page,) = write_exports(report, tmp_path / "out", ["html"])
    browser.get(page.as_uri())

    # the inline style was allowed by the CSP (a blocked one would leave the header unstyled)
    header = browser.find_element(By.TAG_NAME, "header")
    assert header.value_of_css_property("background-color") == "rgba(15, 23, 42, 1)"
    assert "scan-current" in browser.title

    overall = browser.find_element(By.ID, "score-overall").text
    assert overall == report.readiness.overall.label() and overall.endswith("/100")
    soc2 = browser.find_element(By.ID, "score-soc2").text
    assert soc2 == report.readiness.frameworks[0].score.label()

    # a row per finding, with its evidence on screen
    assert len(_visible_rows(browser)) == len(report.findings) == 12
    tls = browser.find_element(By.ID, "f-" + next(f.fingerprint for f in report.findings if f.control_id == "TLS-901"))
    assert '["TLSv1", "TLSv1.1", "TLSv1.2"]' in tls.text and '["TLSv1.2", "TLSv1.3"]' in tls.text
    assert "Set `ssl_protocols TLSv1.2 TLSv1.3;` in nginx." in tls.find_element(By.CSS_SELECTOR, ".remediation").text
    # references and the fingerprint are one click away
    details = tls.find_element(By.CSS_SELECTOR, "details.finding-details")
    assert "cis-docker" not in details.text and "A.8.24" not in details.text
    details.find_element(By.TAG_NAME, "summary").click()
    assert "iso27001 A.8.24" in details.text and "mozilla-tls intermediate" in details.text
    assert browser.find_element(By.ID, "filter-count").text == "12 of 12 findings shown"

    # filters hide rows
    Select(browser.find_element(By.ID, "filter-severity")).select_by_value("critical")
    critical = [f for f in report.findings if f.severity is Severity.CRITICAL]
    assert _visible_rows(browser) == [f"f-{f.fingerprint}" for f in critical]
    assert browser.find_element(By.ID, "filter-count").text == f"{len(critical)} of 12 findings shown"
    Select(browser.find_element(By.ID, "filter-severity")).select_by_value("")
    Select(browser.find_element(By.ID, "filter-host")).select_by_value("sim-2")
    Select(browser.find_element(By.ID, "filter-status")).select_by_value("waived")
    waived = [f for f in report.findings if f.resource.host == "sim-2" and f.status is Status.WAIVED]
    assert _visible_rows(browser) == [f"f-{f.fingerprint}" for f in waived] and len(waived) == 1
    Select(browser.find_element(By.ID, "filter-status")).select_by_value("")
    Select(browser.find_element(By.ID, "filter-host")).select_by_value("")
    Select(browser.find_element(By.ID, "filter-framework")).select_by_value("cis-docker")
    assert len(_visible_rows(browser)) == 1  # only the privileged container maps to CIS Docker
    Select(browser.find_element(By.ID, "filter-framework")).select_by_value("")
    search = browser.find_element(By.ID, "filter-text")
    search.send_keys("montecarlo-web")
    assert len(_visible_rows(browser)) == 1
    search.send_keys(Keys.CONTROL, "a")
    search.send_keys(Keys.DELETE)
    assert len(_visible_rows(browser)) == 12

    # the waived finding shows its justification; expired waivers are listed
    row = browser.find_element(By.ID, f"f-{waived[0].fingerprint}")
    assert "Waived until 2027-03-31: The data team tunnels to the warehouse" in row.text
    expired = browser.find_element(By.ID, "waivers-expired").text
    assert "Old blanket exception for forwarding." in expired and "2026-10-31" in expired
    active = browser.find_element(By.ID, "waivers-active").text
    assert "jane.doe@example.com" in active

    # the diff
    new = browser.find_elements(By.CSS_SELECTOR, "#diff tr.diff-entry[data-change='new']")
    assert sorted(e.text.split()[1] for e in new) == ["SSH-021", "TLS-901"]
    assert "Requirement" in browser.find_element(By.ID, "fw-soc2").text
    manual = browser.find_element(By.CSS_SELECTOR, "#fw-iso27001 tr[data-requirement='A.7.1']").text
    assert "manual - not assessed by this tool" in manual

    # a screenshot a person could read
    browser.execute_script("window.scrollTo(0, 0)")
    png = browser.get_screenshot_as_png()
    (tmp_path / "report.png").write_bytes(png)
    width, height, colours = _png_size_and_colours(png)
    assert (width, height) == (1400, 1000) or (width >= 1000 and height >= 700)
    assert colours > 50, "the screenshot is blank"
