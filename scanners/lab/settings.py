"""Where the lab keeps its images and hosts, and how it names them; all overridable by environment."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from scanners.errors import InputError

NAME_PREFIX = re.compile(r"^[a-z][a-z0-9]{0,7}$")


@dataclass(frozen=True, slots=True)
class LabSettings:
    lab_dir: Path
    image_cache: Path
    mirror: str
    prefix: str
    inventory: Path
    # The Docker Engine that runs the lab's Docker hosts (``lab up --platforms docker``).
    docker_host: str = "unix:///var/run/docker.sock"

    @classmethod
    def from_env(cls, inventory: Path | None = None, prefix: str | None = None) -> LabSettings:
        prefix = prefix or os.environ.get("PREAUDIT_LAB_PREFIX", "sim")
        if not NAME_PREFIX.match(prefix):
            raise InputError(f"lab prefix {prefix!r} must be 1-8 lower-case letters or digits, starting with a letter")
        return cls(
            lab_dir=Path(os.environ.get("PREAUDIT_LAB_DIR", "/var/lib/preaudit/lab")),
            image_cache=Path(os.environ.get("PREAUDIT_IMAGE_CACHE", "/var/cache/preaudit/images")),
            mirror=os.environ.get("PREAUDIT_LAB_MIRROR", "http://deb.debian.org/debian"),
            prefix=prefix,
            inventory=inventory or Path(os.environ.get("PREAUDIT_LAB_INVENTORY", "inventories/lab/hosts.yml")),
            docker_host=os.environ.get(
                "PREAUDIT_LAB_DOCKER_HOST", os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
            ),
        )

    @classmethod
    def isolated(cls, lab_dir: Path, prefix: str) -> LabSettings:
        """A lab of its own (state, hosts, inventory under ``lab_dir``) sharing the image cache."""
        base = cls.from_env(prefix=prefix)
        return cls(lab_dir, base.image_cache, base.mirror, prefix, lab_dir / "hosts.yml", base.docker_host)

    @property
    def state_file(self) -> Path:
        return self.lab_dir / "state.json"

    @property
    def hosts_dir(self) -> Path:
        return self.lab_dir / "hosts"

    @property
    def ssh_key(self) -> Path:
        return self.lab_dir / "ssh" / "id_ed25519"

    @property
    def ca_dir(self) -> Path:
        return self.lab_dir / "ca"
