"""One sslyze Scanner run over every endpoint that answered like a TLS server."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sslyze.mozilla_tls_profile.tls_config_checker import SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER
from sslyze.plugins.certificate_info.implementation import CertificateInfoExtraArgument
from sslyze.plugins.certificate_info.trust_stores.trust_store_repository import TrustStoresRepository
from sslyze.plugins.scan_commands import ScanCommand
from sslyze.scanner.models import ScanCommandsExtraArguments, ServerScanRequest, ServerScanResult
from sslyze.scanner.scanner import Scanner
from sslyze.server_setting import ServerNetworkConfiguration, ServerNetworkLocation

from scanners import __version__
from scanners.scanning import TlsEndpoint
from scanners.tls.settings import ScanSettings, quiet_trust_store_warnings

SCAN_COMMANDS = frozenset(SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER | {ScanCommand.HTTP_HEADERS})
# The probe already proved each endpoint answers; one retry is enough for a dropped connection.
NETWORK_MAX_RETRIES = 1


@dataclass(frozen=True)
class Target:
    endpoint: TlsEndpoint
    ip: str


def _request(target: Target, settings: ScanSettings) -> ServerScanRequest:
    endpoint = target.endpoint
    name = endpoint.server_name or endpoint.address
    return ServerScanRequest(
        server_location=ServerNetworkLocation(hostname=name, port=endpoint.port, ip_address=target.ip),
        network_configuration=ServerNetworkConfiguration(
            tls_server_name_indication=name,
            http_user_agent=f"preaudit/{__version__} (sslyze)",
            network_timeout=settings.network_timeout,
            network_max_retries=NETWORK_MAX_RETRIES,
        ),
        scan_commands=set(SCAN_COMMANDS),
        scan_commands_extra_arguments=ScanCommandsExtraArguments(
            certificate_info=CertificateInfoExtraArgument(custom_ca_file=settings.sslyze_ca_file)
        ),
    )


def run_sslyze(targets: Sequence[Target], settings: ScanSettings) -> Iterator[tuple[Target, ServerScanResult]]:
    """Yield each target with its result as sslyze finishes it (all targets scan in parallel)."""
    by_uuid = {}
    requests = []
    for target in targets:
        request = _request(target, settings)
        by_uuid[request.uuid] = target
        requests.append(request)
    # sslyze loads its trust stores and the CA file in its worker threads, per scan.
    with quiet_trust_store_warnings():
        # Its loader of bundled stores is not thread-safe: load them once, here, before the threads start.
        TrustStoresRepository.get_default()
        scanner = Scanner()
        scanner.queue_scans(requests)
        for result in scanner.get_results():
            yield by_uuid[result.uuid], result
