"""The pieces of the TLS scanner that need no server: answer classification, verifier messages, time choice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from scanners.tls.probe import client_hello, describe_answer
from scanners.tls.trust import certificate_names, readable_error, validation_time
from tests.tls_pki import TestCa, self_signed_without_san


def test_client_hello_is_a_tls_handshake_record() -> None:
    hello = client_hello("example.test")
    assert hello[:2] == b"\x16\x03" and len(hello) > 100
    assert b"example.test" in hello  # SNI is sent
    assert b"127.0.0.1" not in client_hello("127.0.0.1")  # never for an IP address


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (b"\x16\x03\x03\x00\x7a", None),
        (b"\x15\x03\x01\x00\x02", None),
        (b"SSH-2.0-OpenSSH_9.2p1", "not TLS: it answered with an SSH banner"),
        (b"HTTP/1.1 400 Bad Request", "not TLS: it answered in plain HTTP"),
        (b"220 smtp ESMTP", "not TLS: its answer is not a TLS record"),
    ],
)
def test_answers_are_classified(answer: bytes, problem: str | None) -> None:
    assert describe_answer(answer) == problem


def test_verifier_messages_lose_the_certificate_dump_and_name_the_algorithm() -> None:
    raw = (
        "validation failed: candidates exhausted: Forbidden signature algorithm: AlgorithmIdentifier { oid: "
        "DefinedByMarker(PhantomData<asn1::object_identifier::ObjectIdentifier>), params: Other(ObjectIdentifier "
        "{ oid: 1.2.840.10045.4.1 }, None) }"
    )
    assert readable_error(raw) == "candidates exhausted: Forbidden signature algorithm: ecdsa-with-SHA1"
    dump = (
        "validation failed: leaf certificate has no matching subjectAltName (encountered processing <Certificate(x)>)"
    )
    assert readable_error(dump) == "leaf certificate has no matching subjectAltName"


def test_names_come_from_the_subject_alternative_name_only(tmp_path: Path) -> None:
    ca = TestCa(tmp_path)
    assert certificate_names(ca.issue("a", ["a.test", "127.0.0.1"]).certificate) == ["a.test", "127.0.0.1"]
    assert certificate_names(self_signed_without_san(tmp_path, "b", "b.test").certificate) == []


def test_validation_time_is_now_unless_the_chain_is_out_of_date(tmp_path: Path) -> None:
    ca = TestCa(tmp_path)
    now = datetime.now(UTC)
    current = ca.issue("current", ["c.test"]).certificate
    assert validation_time([current], now) == now
    expired = ca.issue("expired", ["e.test"], valid_days=(-30, -5)).certificate
    when = validation_time([expired], now)
    assert expired.not_valid_before_utc < when < expired.not_valid_after_utc
    assert now - when < timedelta(days=5, seconds=2)
