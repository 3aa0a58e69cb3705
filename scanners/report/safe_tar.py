"""Read a tar.gz that may be hostile: hash every member without extracting anything.

Nothing is ever written to disk, so path traversal cannot happen; still, a member whose name is
absolute, climbs out with ``..``, or is not a regular file (symlink, hard link, device, FIFO) is
reported, because a bundle this tool wrote never holds one. Limits on member count, member size
and total size stop a decompression bomb: reading stops at the first limit crossed.
"""

from __future__ import annotations

import hashlib
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

CHUNK = 1 << 20
# tarfile reads a pax or GNU long-name header into memory whole: cap it before it does.
MAX_EXTENDED_HEADER = 1 << 20
_EXTENDED_TYPES = frozenset(
    {tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK}
)


class _BoundedTarInfo(tarfile.TarInfo):
    @classmethod
    def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> _BoundedTarInfo:
        info = super().frombuf(buf, encoding, errors)
        if info.type in _EXTENDED_TYPES and info.size > MAX_EXTENDED_HEADER:
            raise tarfile.ReadError(f"extended header of {info.size} bytes")
        return info


@dataclass(frozen=True, slots=True)
class Limits:
    max_members: int = 100_000
    max_member_bytes: int = 4 << 30
    max_total_bytes: int = 16 << 30
    max_kept_bytes: int = 4 << 20  # members read into memory (manifest, signature, key, metadata)
    max_name_length: int = 1024


DEFAULT_LIMITS = Limits()


@dataclass(slots=True)
class ArchiveScan:
    digests: dict[str, str] = field(default_factory=dict)  # member name (below the root) -> sha256
    kept: dict[str, bytes] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    complete: bool = True  # False when reading stopped early


def unsafe_name(name: str, max_length: int = DEFAULT_LIMITS.max_name_length) -> str | None:
    """Why a relative archive path is unsafe, or None when it is fine."""
    if not name or len(name) > max_length:
        return "empty or too long"
    if "\\" in name or any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "backslash or control character in name"
    path = PurePosixPath(name)
    if path.is_absolute():
        return "absolute path"
    if any(part in ("..", "") for part in name.split("/")) or ".." in path.parts:
        return "path climbs out of the archive or has empty parts"
    return None


def _kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return f"symbolic link to {member.linkname!r}"
    if member.islnk():
        return f"hard link to {member.linkname!r}"
    if member.isdev():
        return "device file"
    if member.isfifo():
        return "FIFO"
    return "special file"


def scan_archive(path: Path, root: str, keep: frozenset[str], limits: Limits = DEFAULT_LIMITS) -> ArchiveScan:
    """Hash every regular file under ``root/``; keep the bytes of the names in ``keep``."""
    scan = ArchiveScan()
    total = 0
    members = 0
    try:
        with tarfile.open(path, mode="r|gz", tarinfo=_BoundedTarInfo) as archive:
            for member in archive:
                members += 1
                if members > limits.max_members:
                    scan.problems.append(f"more than {limits.max_members} members: stopped reading")
                    scan.complete = False
                    break
                name = member.name.removeprefix("./")
                why = unsafe_name(name, limits.max_name_length)
                if why is None and not (name == root or name.startswith(root + "/")):
                    why = f"outside the bundle directory {root}/"
                if why is not None:
                    scan.problems.append(f"unsafe member {name!r}: {why}")
                    continue
                if member.isdir():
                    continue
                relative = name.removeprefix(root + "/")
                if not member.isreg():
                    scan.problems.append(f"unsafe member {relative}: {_kind(member)}")
                    continue
                if relative in scan.digests:
                    scan.problems.append(f"duplicate member: {relative}")
                    continue
                if member.size > limits.max_member_bytes or total + member.size > limits.max_total_bytes:
                    scan.problems.append(f"member {relative} exceeds the size limit: stopped reading")
                    scan.complete = False
                    break
                handle = archive.extractfile(member)
                if handle is None:  # not reachable for a regular file; kept for the type checker
                    continue
                digest = hashlib.sha256()
                kept = bytearray() if relative in keep else None
                while chunk := handle.read(CHUNK):
                    total += len(chunk)
                    digest.update(chunk)
                    if kept is not None and len(kept) + len(chunk) <= limits.max_kept_bytes:
                        kept += chunk
                    elif kept is not None:
                        scan.problems.append(f"{relative} is larger than {limits.max_kept_bytes} bytes")
                        kept = None
                scan.digests[relative] = digest.hexdigest()
                if kept is not None:
                    scan.kept[relative] = bytes(kept)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        scan.problems.append(f"archive is damaged or not a tar.gz: {exc.__class__.__name__}: {exc}")
        scan.complete = False
    return scan
