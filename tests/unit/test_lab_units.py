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


def test_a_state_written_before_platforms_loads_its_hosts_as_nspawn(tmp_path: Path) -> None:
    from scanners.lab.fleet import LabState

    state = tmp_path / "state.json"
    state.write_text(
        '{"version": 1, "image": "x", "prefix": "sim", "hosts": {"sim-1": {"name": "sim-1", "slot": 1,'
        ' "ssh_port": 2201, "https_port": 4431, "root": "/x/sim-1/root"}}}'
    )
    assert LabState.load(state).hosts["sim-1"].platform == "nspawn"


def test_up_refuses_an_unknown_platform_before_touching_anything(tmp_path: Path) -> None:
    from scanners.lab.fleet import Fleet

    fleet = Fleet(LabSettings.isolated(tmp_path / "lab", "ut"))
    with pytest.raises(InputError, match=r"unknown lab platform.*vmware"):
        fleet.up(2, ["docker", "vmware"])
    assert not (tmp_path / "lab").exists()


def test_lab_up_names_the_known_platforms_on_a_typo() -> None:
    result = subprocess.run(
        [".venv/bin/preaudit", "lab", "up", "--platforms", "dokcer"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert "choose from nspawn, docker, lxc" in result.stderr
    assert "Traceback" not in result.stderr


def test_lxc_config_names_the_veth_pair_and_shuts_systemd_down_cleanly(tmp_path: Path) -> None:
    from scanners.lab import lxc_host

    if not lxc_host.COMMON_CONFIG.exists():
        pytest.skip("Debian's lxc package is not installed")
    config = lxc_host.write_config(tmp_path, "sim-2", tmp_path / "root").read_text().splitlines()
    assert f"lxc.rootfs.path = dir:{tmp_path / 'root'}" in config
    assert {"lxc.net.0.veth.pair = ve-sim-2", "lxc.net.0.name = host0"} <= set(config)
    assert "lxc.signal.halt = SIGRTMIN+3" in config
    assert f"lxc.include = {lxc_host.COMMON_CONFIG}" in config


def test_docker_host_files_carry_owners_and_modes_but_not_their_parents(tmp_path: Path) -> None:
    import io
    import tarfile

    from scanners.lab import docker_host

    ssh = tmp_path / "home/ops/.ssh"
    ssh.mkdir(parents=True, mode=0o700)
    (ssh / "authorized_keys").write_text("ssh-ed25519 AAAA test\n")
    (ssh / "authorized_keys").chmod(0o600)
    if os.geteuid() == 0:
        os.chown(ssh, 1000, 1000)
    data = docker_host.host_files(tmp_path, ["home/ops/.ssh", "home/ops/.ssh/authorized_keys"])
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert set(members) == {"home/ops/.ssh", "home/ops/.ssh/authorized_keys"}
    assert members["home/ops/.ssh"].isdir() and members["home/ops/.ssh"].mode == 0o700
    assert members["home/ops/.ssh/authorized_keys"].mode == 0o600
    if os.geteuid() == 0:
        assert members["home/ops/.ssh"].uid == 1000


def test_vm_guest_gets_static_addressing_by_networkd(tmp_path: Path) -> None:
    from scanners.lab import vm_host

    vm_host.configure_guest(tmp_path, "10.213.7.2", "10.213.7.1")
    network = (tmp_path / "etc/systemd/network/10-preaudit-lab.network").read_text()
    assert "Address=10.213.7.2/30" in network and "Gateway=10.213.7.1" in network
    link = tmp_path / "etc/systemd/system/multi-user.target.wants/systemd-networkd.service"
    assert os.readlink(link) == "/lib/systemd/system/systemd-networkd.service"
    vm_host.configure_guest(tmp_path, "10.213.7.2", "10.213.7.1")  # a second call is harmless


def test_vm_emulates_the_cpu_unless_kvm_is_asked_for(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from scanners.lab import vm_host

    def argv() -> list[str]:
        return vm_host.qemu_argv("sim-4", tmp_path / "d", tmp_path / "k", tmp_path / "i", "ve-sim-4", tmp_path / "s")

    monkeypatch.delenv("PREAUDIT_LAB_VM_ACCEL", raising=False)
    assert argv()[argv().index("-accel") + 1].startswith("tcg")
    assert "tap,id=net0,ifname=ve-sim-4,script=no,downscript=no" in argv()
    monkeypatch.setenv("PREAUDIT_LAB_VM_ACCEL", "kvm")
    monkeypatch.setattr("scanners.lab.vm_host.os.access", lambda _path, _mode: True)
    assert argv()[argv().index("-accel") + 1] == "kvm"


def test_vm_disk_holds_the_tree_it_was_made_from(tmp_path: Path) -> None:
    import shutil

    from scanners.lab import vm_host

    if shutil.which("mkfs.ext4") is None or shutil.which("debugfs") is None:
        pytest.skip("e2fsprogs is not installed")
    tree = tmp_path / "root"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc/hostname").write_text("sim-4\n")
    (tree / "etc/hostname").chmod(0o640)
    disk = tmp_path / "disk.raw"
    vm_host.make_disk(tree, disk)

    def debugfs(request: str) -> str:
        return subprocess.run(["debugfs", "-R", request, str(disk)], capture_output=True, text=True, check=True).stdout

    assert debugfs("cat /etc/hostname") == "sim-4\n"
    stat = debugfs("stat /etc/hostname")
    assert "Mode:  0640" in stat


def test_each_variant_has_its_own_stable_recipe_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert set(image.VARIANTS) == {"lab", "minimal"}
    assert image.recipe_hash("minimal") == image.recipe_hash("minimal")
    assert image.recipe_hash("lab") != image.recipe_hash("minimal")
    copy = tmp_path / "image"
    subprocess.run(["cp", "-a", str(image.RECIPE_DIR), str(copy)], check=True)
    monkeypatch.setattr(image, "RECIPE_DIR", copy)
    lab, minimal = image.recipe_hash("lab"), image.recipe_hash("minimal")
    # A variant's own recipe decides only its image ...
    with (copy / image.VARIANTS["minimal"].script).open("a") as script:
        script.write("# changed\n")
    assert (image.recipe_hash("lab"), image.recipe_hash("minimal") != minimal) == (lab, True)
    minimal = image.recipe_hash("minimal")
    with (copy / image.VARIANTS["lab"].script).open("a") as script:
        script.write("# changed\n")
    assert (image.recipe_hash("lab") != lab, image.recipe_hash("minimal")) == (True, minimal)
    lab = image.recipe_hash("lab")
    # ... the shared steps and platform files decide both.
    with (copy / image.COMMON_SCRIPT).open("a") as script:
        script.write("# changed\n")
    assert image.recipe_hash("lab") != lab and image.recipe_hash("minimal") != minimal


def test_an_unknown_variant_has_no_recipe() -> None:
    with pytest.raises(InputError, match=r"unknown lab variant 'bogus' \(known: lab, minimal\)"):
        image.recipe_hash("bogus")


def test_pruning_keeps_every_variants_current_image(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    current = {image.recipe_hash(v) for v in image.VARIANTS}
    for name in [*current, "0123456789abcdef", ".build-x-1"]:
        (cache / name / "rootfs").mkdir(parents=True)
    image._prune(cache, keep=current)
    assert {p.name for p in cache.iterdir()} == current | {".build-x-1"}


def test_the_state_keeps_each_hosts_variant_and_image(tmp_path: Path) -> None:
    from scanners.lab.fleet import HostState, LabState

    state = LabState(prefix="sim", hosts={
        "sim-1": HostState("sim-1", 1, 2201, 4431, "/x/sim-1/root", variant="minimal", image="abc"),
        "sim-2": HostState("sim-2", 2, 2202, 4432, "/x/sim-2/root", platform="docker"),
    })  # fmt: skip
    path = tmp_path / "state.json"
    path.write_text(state.to_json())
    loaded = LabState.load(path)
    assert loaded == state
    assert (loaded.hosts["sim-1"].variant, loaded.hosts["sim-1"].image) == ("minimal", "abc")
    assert loaded.hosts["sim-2"].variant == "lab"


def test_a_state_written_before_variants_loads_its_hosts_as_lab_hosts_of_its_image(tmp_path: Path) -> None:
    from scanners.lab.fleet import LabState

    state = tmp_path / "state.json"
    image_hash = "04fb0e36a90b5aaf"  # pragma: allowlist secret (a recipe hash)
    state.write_text(
        f'{{"version": 1, "image": "{image_hash}", "prefix": "sim", "hosts": {{"sim-1": {{"name": "sim-1",'
        ' "slot": 1, "ssh_port": 2201, "https_port": 4431, "root": "/x/sim-1/root", "platform": "lxc"}}}'
    )
    host = LabState.load(state).hosts["sim-1"]
    assert (host.variant, host.image, host.platform) == ("lab", image_hash, "lxc")


def test_host_i_gets_the_i_th_variant_and_platform_in_turn() -> None:
    from scanners.lab.fleet import _wanted_hosts

    wanted = _wanted_hosts("sim", 5, ["nspawn", "docker"], ["lab", "minimal", "minimal"])
    assert wanted == {
        "sim-1": ("nspawn", "lab"),
        "sim-2": ("docker", "minimal"),
        "sim-3": ("nspawn", "minimal"),
        "sim-4": ("docker", "lab"),
        "sim-5": ("nspawn", "minimal"),
    }


def test_up_refuses_an_unknown_variant_before_touching_anything(tmp_path: Path) -> None:
    from scanners.lab.fleet import Fleet

    fleet = Fleet(LabSettings.isolated(tmp_path / "lab", "ut"))
    with pytest.raises(InputError, match=r"unknown lab variant\(s\) bogus \(known: lab, minimal\)"):
        fleet.up(2, ["nspawn"], ["minimal", "bogus"])
    assert not (tmp_path / "lab").exists()


def test_the_inventory_connects_to_a_minimal_host_as_root_admitted_by_the_ssh_preflight(tmp_path: Path) -> None:
    from scanners.lab.fleet import Fleet, HostState, LabState

    role_defaults = yaml.safe_load(Path("roles/ssh_hardening/defaults/main.yml").read_text())
    settings = LabSettings.isolated(tmp_path / "lab", "ut")
    state = LabState(prefix="ut", hosts={
        "ut-1": HostState("ut-1", 1, 2201, 4431, "/x/ut-1/root"),
        "ut-2": HostState("ut-2", 2, 2202, 4432, "/x/ut-2/root", variant="minimal"),
    })  # fmt: skip
    inventory = yaml.safe_load(Fleet(settings).write_inventory(state).read_text())["all"]
    hosts = inventory["children"]["simulation"]["hosts"]
    assert inventory["vars"]["ansible_user"] == "ops"
    assert hosts["ut-1"]["lab_variant"] == "lab"
    assert not {"ansible_user", "ssh_hardening_permit_root_login", "ssh_hardening_allow_groups"} & set(hosts["ut-1"])
    minimal = hosts["ut-2"]
    assert minimal["lab_variant"] == "minimal"
    assert minimal["ansible_user"] == "root"
    assert minimal["ssh_hardening_permit_root_login"] == "prohibit-password"
    # The role's list, extended: root (whose only group is root) is admitted, nobody is dropped.
    assert minimal["ssh_hardening_allow_groups"] == [*role_defaults["ssh_hardening_allow_groups"], "root"]
    # An empty list admits everyone: it stays the role's.
    assert ("ssh_hardening_allow_users" in minimal) == bool(role_defaults["ssh_hardening_allow_users"])
