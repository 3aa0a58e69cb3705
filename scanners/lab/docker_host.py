"""Lab hosts that are Docker containers: the lab image imported into a Docker Engine and booted
with systemd as PID 1, as a platform team running "machine containers" would.

The container runs with Docker's defaults for everything that decides what a hardening role can
do (capabilities, seccomp, a read-only /proc/sys, no kernel modules, no audit), so the roles meet
a real container's limits. Its network is ``none``; the fleet plugs in a veth pair of its own, so
the container is reached like every other lab host.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scanners.errors import EnvironmentProblem

if TYPE_CHECKING:
    import docker
    import docker.models.containers

IMAGE_REPOSITORY = "preaudit-lab"
LABEL = "io.preaudit.lab"


def client(base_url: str) -> docker.DockerClient:
    import docker
    import docker.errors

    try:
        engine = docker.DockerClient(base_url=base_url, timeout=120)
        engine.ping()
    except (docker.errors.DockerException, OSError) as exc:
        raise EnvironmentProblem(
            f"lab: no Docker Engine answers at {base_url} ({exc}); start dockerd or set PREAUDIT_LAB_DOCKER_HOST"
        ) from None
    return engine


def ensure_image(engine: docker.DockerClient, rootfs: Path, tag: str) -> str:
    """The lab image as a Docker image, imported once per recipe (``docker import`` of the rootfs)."""
    import docker.errors

    reference = f"{IMAGE_REPOSITORY}:{tag}"
    with contextlib.suppress(docker.errors.ImageNotFound):
        engine.images.get(reference)
        return reference
    # tar keeps numeric owners, modes and file capabilities exactly as debootstrap left them.
    argv = ["tar", "-C", str(rootfs), "--numeric-owner", "--xattrs", "--xattrs-include=*", "-cf", "-", "."]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as packer:
        assert packer.stdout is not None and packer.stderr is not None
        engine.api.import_image_from_stream(packer.stdout, repository=IMAGE_REPOSITORY, tag=tag,
                                            changes=['CMD ["/sbin/init"]'])  # fmt: skip
        error = packer.stderr.read().decode(errors="replace").strip().splitlines()
    if packer.returncode != 0:
        # A truncated stream still imports: never leave that image behind under the recipe's tag.
        with contextlib.suppress(docker.errors.ImageNotFound):
            engine.images.remove(reference, force=True)
        detail = error[-1] if error else f"tar exit {packer.returncode}"
        raise EnvironmentProblem(f"lab: packing the image for Docker failed: {detail}")
    return reference


def find(engine: docker.DockerClient, name: str) -> docker.models.containers.Container | None:
    import docker.errors

    try:
        return engine.containers.get(name)
    except docker.errors.NotFound:
        return None


def create(engine: docker.DockerClient, image_ref: str, name: str, hostname: str, owner: str,
           files: bytes) -> docker.models.containers.Container:  # fmt: skip
    """A stopped container with the host's own files (``files``, a tar) in place."""
    container = engine.containers.create(
        image_ref,
        command=["/sbin/init"],
        name=name,
        hostname=hostname,
        network_mode="none",
        # systemd needs a writable /run and reads its cgroups; the rest is Docker's default.
        tmpfs={"/run": "rw,nosuid,nodev,mode=755", "/run/lock": "rw,nosuid,nodev,noexec"},
        volumes={"/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "ro"}},
        environment={"container": "docker"},
        stop_signal="SIGRTMIN+3",
        # Docker names the container in /etc/hosts only on its own networks; unresolvable, the
        # host's name would cost sudo a DNS timeout at every call.
        extra_hosts={hostname: "127.0.1.1", "montecarlo.lab": "127.0.0.1"},
        labels={LABEL: owner},
    )
    container.put_archive("/", files)
    return container


def init_pid(container: docker.models.containers.Container) -> int:
    container.reload()
    pid = int(container.attrs["State"]["Pid"] or 0)
    if pid <= 0:
        raise EnvironmentProblem(f"lab: container {container.name} is not running ({container.status})")
    return pid


def stop(container: Any, timeout: int = 20) -> None:
    import docker.errors

    with contextlib.suppress(docker.errors.NotFound):
        container.stop(timeout=timeout)


def remove(container: Any) -> None:
    import docker.errors

    with contextlib.suppress(docker.errors.NotFound):
        container.remove(force=True, v=True)


def host_files(staging: Path, paths: list[str]) -> bytes:
    """A tar of ``paths`` (relative to ``staging``) with their owners and modes, parents excluded:
    extracting it must not change the directories the image already has."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in paths:
            tar.add(str(staging / rel), arcname=rel, recursive=False)
    return buffer.getvalue()
