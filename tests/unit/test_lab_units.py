"""Lab pieces that need no root: recipe hashing, process identity, settings, atomic writes."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from scanners.errors import InputError
from scanners.fsutil import write_text_atomic
from scanners.lab import image
from scanners.lab.processes import ProcessRef, start_ticks, stop
from scanners.lab.settings import LabSettings

MANIFEST = Path(image.__file__).with_name("weaknesses.yml")


def test_recipe_hash_is_stable_and_follows_the_recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert image.recipe_hash() == image.recipe_hash()
    copy = tmp_path / "image"
    subprocess.run(["cp", "-a", str(image.RECIPE_DIR), str(copy)], check=True)
    monkeypatch.setattr(image, "RECIPE_DIR", copy)
    original = image.recipe_hash()
    (copy / "files/opt/montecarlo/.env").write_text("JWT_SECRET=other\n")
    assert image.recipe_hash() != original


def test_process_ref_recognises_only_the_same_process() -> None:
    proc = subprocess.Popen(["sleep", "30"])
    ref = ProcessRef.of(proc.pid)
    assert ref.alive()
    assert not ProcessRef(proc.pid, ref.start_ticks + 1).alive()  # a recycled pid
    assert stop(ref, timeout=5)
    proc.wait()
    assert not ref.alive()
    assert start_ticks(proc.pid) is None
    assert not stop(ref)


def test_settings_validate_the_prefix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="lab prefix"):
        LabSettings.from_env(prefix="-x")
    monkeypatch.setenv("PREAUDIT_IMAGE_CACHE", str(tmp_path / "cache"))
    isolated = LabSettings.isolated(tmp_path / "lab", "t")
    assert isolated.inventory == tmp_path / "lab" / "hosts.yml"
    assert isolated.image_cache == tmp_path / "cache"


def test_atomic_write_leaves_the_old_file_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "report.json"
    write_text_atomic(target, "old")

    def full_disk(_fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        write_text_atomic(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_weakness_manifest_is_complete() -> None:
    weaknesses = yaml.safe_load(MANIFEST.read_text())["weaknesses"]
    ids = [w["id"] for w in weaknesses]
    assert len(ids) == len(set(ids)) >= 25
    for w in weaknesses:
        assert {"id", "kind", "where", "what", "probe", "controls", "fixed_by"} <= set(w), w["id"]
        assert w["controls"], w["id"]
        assert len(w["probe"]) == 1, w["id"]
