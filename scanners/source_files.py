"""Finding and reading the files a content scanner (code, secrets) looks at, safely.

Every file that cannot be read as text becomes a :class:`FileProblem` with a one-line reason
instead of an exception, so one bad file never stops a scan: FIFOs and devices (opening them
could block), files over the size limit (never read into memory), symbolic-link loops, broken
links, binary and non-UTF-8 content, files that vanish or become unreadable mid-scan.
"""

from __future__ import annotations

import errno
import os
import stat
import tokenize
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from scanners.scanning import ScanRoot

MAX_FILE_BYTES = 100 * 1024 * 1024
# Directories that never hold the project's own text: version control, caches, build outputs.
# Virtual environments (a directory with pyvenv.cfg) are skipped too: third-party code is the
# dependency scanner's business, not the code or secrets scanner's.
SKIPPED_DIRS = frozenset(
    {".git", ".hg", ".svn", ".bzr", "CVS", "__pycache__", ".tox", ".nox", ".eggs"}
    | {".mypy_cache", ".ruff_cache", ".pytest_cache"}
)
_BINARY_SNIFF_BYTES = 8192


@dataclass(frozen=True, slots=True)
class Candidate:
    """A file found under a root that looks like something to read."""

    root: ScanRoot
    path: Path

    @property
    def display(self) -> str:
        return self.root.resource_path(self.path)

    @property
    def relative(self) -> str:
        """The path relative to the root, as baselines and caches name files."""
        if self.path == self.root.path:
            return self.path.name
        return self.path.relative_to(self.root.path).as_posix()


@dataclass(frozen=True, slots=True)
class FileProblem:
    """A file (or root) that could not be assessed, and why, in one line."""

    root: ScanRoot
    path: Path
    message: str

    @property
    def display(self) -> str:
        return self.root.resource_path(self.path)


def _oserror_reason(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symbolic link loop; not read"
    if exc.errno == errno.ENOENT:
        return "vanished during the scan (or is a broken symbolic link); not read"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied; not read"
    if exc.errno == errno.EISDIR:
        return "is a directory where a file was expected; not read"
    return f"cannot be read ({os.strerror(exc.errno) if exc.errno else type(exc).__name__}); not read"


def _not_regular(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "is a directory where a file was expected; not read"
    return f"is {_kind_of(mode)}, not a regular file; not read"


def _kind_of(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "of an unknown kind"


def _skipped_dir(name: str, path: Path) -> bool:
    # *.egg-info is written by `pip install -e .` and copies the README: a build artefact.
    return name in SKIPPED_DIRS or name.endswith(".egg-info") or (path / "pyvenv.cfg").exists()


def walk(root: ScanRoot, wanted: Callable[[Path], bool]) -> Iterator[Candidate | FileProblem]:
    """Every regular file under ``root`` for which ``wanted(path)`` is true, or why it is unreadable.

    Directory symbolic links are followed once; a link back to one of its own ancestors is a
    loop and is reported, never followed forever.
    """
    try:
        root_stat = root.path.stat()
    except OSError as exc:
        yield FileProblem(root, root.path, f"scan root {_oserror_reason(exc)}")
        return
    if not stat.S_ISDIR(root_stat.st_mode):
        yield from _check_file(root, root.path, root_stat.st_mode, root_stat.st_size)
        return
    seen: set[tuple[int, int]] = set()
    stack: list[tuple[Path, tuple[tuple[int, int], ...]]] = [(root.path, ((root_stat.st_dev, root_stat.st_ino),))]
    seen.add((root_stat.st_dev, root_stat.st_ino))
    while stack:
        directory, ancestors = stack.pop()
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            yield FileProblem(root, directory, f"directory {_oserror_reason(exc)}")
            continue
        subdirs: list[tuple[Path, tuple[tuple[int, int], ...]]] = []
        for entry in entries:
            path = Path(entry.path)
            try:
                st = entry.stat(follow_symlinks=True)
            except OSError as exc:
                if wanted(path) or entry.is_symlink():
                    yield FileProblem(root, path, _oserror_reason(exc))
                continue
            if stat.S_ISDIR(st.st_mode):
                identity = (st.st_dev, st.st_ino)
                if identity in ancestors:
                    yield FileProblem(root, path, "symbolic link loop (points to one of its own parents); not followed")
                elif identity not in seen and not _skipped_dir(entry.name, path):
                    seen.add(identity)
                    subdirs.append((path, (*ancestors, identity)))
                continue
            if wanted(path):
                yield from _check_file(root, path, st.st_mode, st.st_size)
        # Reversed so that the stack pops directories in name order: stable output order.
        stack.extend(reversed(subdirs))


def _check_file(root: ScanRoot, path: Path, mode: int, size: int) -> Iterator[Candidate | FileProblem]:
    if not stat.S_ISREG(mode):
        yield FileProblem(root, path, _not_regular(mode))
    elif size > MAX_FILE_BYTES:
        yield FileProblem(root, path, f"is {size} bytes, over the {MAX_FILE_BYTES // (1024 * 1024)} MB limit; not read")
    else:
        yield Candidate(root, path)


def read_bytes(path: Path) -> bytes | str:
    """The file's bytes, or a one-line reason it cannot be read.

    Opened non-blocking and checked again after opening, because the file may have been
    replaced by a FIFO or grown past the limit since it was listed.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        return _oserror_reason(exc)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return _not_regular(st.st_mode)
        if st.st_size > MAX_FILE_BYTES:
            return f"is {st.st_size} bytes, over the {MAX_FILE_BYTES // (1024 * 1024)} MB limit; not read"
        chunks: list[bytes] = []
        remaining = MAX_FILE_BYTES + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        if remaining <= 0:
            return f"grew over the {MAX_FILE_BYTES // (1024 * 1024)} MB limit while being read; not read"
        return b"".join(chunks)
    except OSError as exc:
        return _oserror_reason(exc)
    finally:
        os.close(fd)


def is_binary(data: bytes) -> bool:
    return b"\x00" in data[:_BINARY_SNIFF_BYTES]


def decode_text(data: bytes) -> str | None:
    """UTF-8 text (a leading BOM is dropped), or None when the bytes are not UTF-8."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None


def decode_python(data: bytes) -> str | None:
    """Python source decoded as the interpreter would (PEP 263 coding cookie, else UTF-8)."""
    try:
        encoding, _ = tokenize.detect_encoding(iter(data.splitlines(keepends=True)).__next__)
        return data.decode(encoding)
    except (SyntaxError, UnicodeDecodeError, LookupError):
        return None


def occurrence_key(key: str, occurrence: int) -> str:
    """The content key of the n-th identical hit in one file.

    Findings are told apart by content, not line numbers; two identical hits in one file (the
    same secret twice, the same call twice) are told apart by their order, which survives edits
    elsewhere in the file.
    """
    return key if occurrence == 1 else f"{key}#{occurrence}"
