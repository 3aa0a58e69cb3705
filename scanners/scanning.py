"""What every scanner is given: the catalog, a way to emit findings as they arrive, and a stop flag.

Scanners produce findings; exports consume them; this context is the only thing between.
A scanner emits each finding as soon as it has it (the pipeline streams them to disk), raises
on a failure it cannot report per resource (the pipeline turns that into an error finding of
SCAN-001 and goes on with the others), and checks ``cancelled`` between units of work.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from scanners.catalog import Catalog
from scanners.findings import Evidence, Finding, Resource, Status


@dataclass(frozen=True, slots=True)
class ScanRoot:
    """A tree or file to scan on the controller, and what to call it in findings.

    Files fetched from a host are scanned from a local copy: ``path`` is the copy, ``host`` and
    ``display`` say where it really lives, so findings name ``host`` and ``display/relative``.
    """

    path: Path
    host: str | None = None
    display: str | None = None

    def resource_path(self, file: Path) -> str:
        """The path a finding shows for ``file`` (which lies under ``path``)."""
        base = self.display if self.display is not None else str(self.path)
        if file == self.path:
            return base
        return str(PurePosixPath(base) / file.relative_to(self.path).as_posix())


@dataclass(frozen=True, slots=True)
class TlsEndpoint:
    """A TLS endpoint to scan: where to connect, the name to ask for (SNI), the host it belongs to."""

    address: str
    port: int
    server_name: str | None = None
    host: str | None = None

    @property
    def label(self) -> str:
        return f"{self.server_name or self.address}:{self.port}"


Emit = Callable[[Finding], None]
Progress = Callable[[str], None]


@dataclass(slots=True)
class ScanContext:
    catalog: Catalog
    emit: Emit
    progress: Progress = lambda _msg: None
    cancelled: threading.Event = field(default_factory=threading.Event)


def error_finding(
    catalog: Catalog, scanner: str, resource: Resource, message: str, control_id: str = "SCAN-001"
) -> Finding:
    """An error finding: the resource could not be assessed, and the report must say so."""
    control = catalog.get(control_id)
    return control.finding(
        Status.ERROR,
        resource,
        scanner,
        evidence=Evidence(observed=message, expected="assessed without error"),
        message=message,
        title=f"{control.title}: {scanner} could not assess {resource.label()}" if control_id == "SCAN-001" else None,
    )
