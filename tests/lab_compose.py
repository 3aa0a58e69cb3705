"""What the lab image's docker-compose.yml is expected to fail, for the unit and lab tests alike."""

from __future__ import annotations

SERVICES = ("simulation", "worker")
COMPOSE_CONTROLS = [f"CTR-C-{i:03d}" for i in range(1, 13)]
# What the lab's docker-compose.yml fails on its own (W-017, W-018, W-019 and the rest).
SEEDED_COMPOSE_FAILURES = {(s, c) for s in SERVICES for c in COMPOSE_CONTROLS} - {
    ("simulation", "CTR-C-004"),
    ("simulation", "CTR-C-012"),
    ("worker", "CTR-C-001"),
    ("worker", "CTR-C-002"),
    ("worker", "CTR-C-003"),
    ("worker", "CTR-C-012"),
}
