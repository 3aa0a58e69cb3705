"""Static checks of a Dockerfile (CTR-F-001 to CTR-F-006), one verdict per control."""

from __future__ import annotations

import re

from scanners.containers import policy
from scanners.containers.dockerfile_model import Dockerfile, Instruction, expand, key_values, parse_dockerfile, words
from scanners.containers.verdicts import Verdict, verdict

_URL = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|git@)", re.IGNORECASE)
_APT = re.compile(r"\bapt(?:-get)?\b[^;&|]*?\s(?:install|update|upgrade|dist-upgrade)\b")
_APT_CLEANUP = re.compile(r"\brm\b[^;&|]*?/var/lib/apt/lists")
_PIP = re.compile(r"(?:\bpip(?:3(?:\.\d+)?)?|\bpython(?:3(?:\.\d+)?)?\s+-m\s+pip)\s+install\b")
_APK = re.compile(r"\bapk\b[^;&|]*?\sadd\b")
_APK_CLEANUP = re.compile(r"\brm\b[^;&|]*?/var/cache/apk")
_COMMAND_SEPARATOR = re.compile(r"&&|\|\||[;|\n]")


def check_dockerfile(text: str) -> list[Verdict]:
    """Every Dockerfile control evaluated on ``text``; raises DockerfileError if it is not a Dockerfile."""
    dockerfile = parse_dockerfile(text)
    return [
        _runs_as_root(dockerfile),
        _unpinned_base_images(dockerfile),
        _add_from_url(dockerfile),
        _secrets(dockerfile),
        _healthcheck(dockerfile),
        _package_caches(dockerfile),
    ]


def _last(dockerfile: Dockerfile, keyword: str) -> Instruction | None:
    """The instruction that applies to the image: the last one in the final stage or the stages it builds on."""
    for stage in dockerfile.lineage():
        found = [i for i in stage.instructions if i.keyword == keyword]
        if found:
            return found[-1]
    return None


def _runs_as_root(dockerfile: Dockerfile) -> Verdict:
    user = _last(dockerfile, "USER")
    expected = "USER <non-root user> in the final stage"
    if user is None:
        return verdict(
            "CTR-F-001",
            ["no USER instruction in the final stage: the image runs as root"],
            observed="no USER instruction",
            expected=expected,
            ok="",
        )
    name, unresolved = expand(user.value.strip(), dockerfile.stage_of(user).variables)
    problems = [] if not policy.is_root_user(name) else [f"USER {user.value.strip()} runs as root"]
    if unresolved and not name.strip():
        problems = [f"USER {user.value.strip()} has no value ({', '.join(unresolved)} unset): runs as root"]
    return verdict(
        "CTR-F-001",
        problems,
        observed=f"USER {user.value.strip()}",
        expected=expected,
        ok=f"runs as {name}",
        line=user.line,
    )


def _image_tag_problem(image: str) -> str | None:
    if image.lower() == "scratch" or "@" in image:
        return None
    name = image.rsplit("/", 1)[-1]
    if ":" not in name:
        return "untagged (means latest)"
    tag = name.rsplit(":", 1)[1]
    if not tag:
        return "empty tag"
    if tag.lower() == "latest":
        return "tag latest"
    return None


def _unpinned_base_images(dockerfile: Dockerfile) -> Verdict:
    problems: list[str] = []
    observed: list[str] = []
    first_line: int | None = None
    for stage in dockerfile.stages:
        if stage.parent is not None:
            continue  # FROM an earlier stage, not a base image
        problem: str | None
        if stage.unresolved:
            problem = f"tag from build argument {', '.join(stage.unresolved)} without a default"
        else:
            problem = _image_tag_problem(stage.base_expanded)
        observed.append(f"FROM {stage.base} (line {stage.line})")
        if problem:
            problems.append(f"FROM {stage.base}: {problem}")
            first_line = first_line or stage.line
    return verdict(
        "CTR-F-002",
        problems,
        observed=observed,
        expected="every base image pinned to a version tag or digest, never latest",
        ok="base images pinned",
        line=first_line,
    )


def _add_from_url(dockerfile: Dockerfile) -> Verdict:
    hits: list[tuple[Instruction, str]] = []
    for item in dockerfile.all_instructions():
        if item.keyword != "ADD":
            continue
        args = [w for w in words(item.value) if not w.startswith("--")]
        if any(_URL.match(src) for src in args[:-1]):
            # A download URL can carry a token; it is shown without it.
            hits.append((item, policy.redact_url_credentials(f"ADD {' '.join(args)} (line {item.line})")))
    return verdict(
        "CTR-F-003",
        [shown for _, shown in hits],
        observed=[shown for _, shown in hits],
        expected="COPY of local files, or a verified download in RUN",
        ok="no ADD from a URL",
        line=hits[0][0].line if hits else None,
    )


def _secrets(dockerfile: Dockerfile) -> Verdict:
    # Only names and line numbers go into the finding: the value is the secret.
    hits: list[tuple[str, Instruction]] = []
    for item in dockerfile.all_instructions():
        if item.keyword not in ("ENV", "ARG"):
            continue
        for name, value in key_values(item.keyword, item.value):
            if value is None or not value.strip():
                continue
            if policy.is_secret_name(name) or policy.has_url_credentials(value):
                hits.append((name, item))
    described = [f"{item.keyword} {name} (line {item.line})" for name, item in hits]
    return verdict(
        "CTR-F-004",
        [f"secret in {d}" for d in described],
        observed=described,
        expected="no secret values in ENV or ARG",
        ok="no secret in ENV or ARG",
        line=hits[0][1].line if hits else None,
        details={"variables": [name for name, _ in hits]} if hits else None,
    )


def _healthcheck(dockerfile: Dockerfile) -> Verdict:
    check = _last(dockerfile, "HEALTHCHECK")
    disabled = check is not None and words(check.value)[:1] in (["NONE"], ["none"])
    if check is None:
        problems = ["no HEALTHCHECK instruction"]
    elif disabled:
        problems = ["HEALTHCHECK NONE disables the health check"]
    else:
        problems = []
    # The probe command is not shown: it can hold credentials (curl -u user:password ...).
    return verdict(
        "CTR-F-005",
        problems,
        observed="HEALTHCHECK NONE" if disabled else "HEALTHCHECK defined" if check else "no HEALTHCHECK instruction",
        expected="HEALTHCHECK CMD ... in the final stage",
        ok="HEALTHCHECK defined",
        line=check.line if disabled and check else None,
    )


def _package_caches(dockerfile: Dockerfile) -> Verdict:
    lineage = dockerfile.lineage()
    pip_cache_off = any(
        name == "PIP_NO_CACHE_DIR" and value
        for stage in lineage
        for item in stage.instructions
        if item.keyword == "ENV"
        for name, value in key_values("ENV", item.value)
    )
    problems: list[str] = []
    lines: list[int] = []
    for stage in reversed(lineage):
        for item in stage.instructions:
            if item.keyword != "RUN":
                continue
            found = _run_cache_problems(" ".join(words(item.value)), pip_cache_off)
            problems += [f"{p} (line {item.line})" for p in found]
            lines += [item.line] * len(found)
    return verdict(
        "CTR-F-006",
        problems,
        observed=problems,
        expected="apt lists removed, pip --no-cache-dir, apk --no-cache, in the RUN that installs",
        ok="no package manager cache left",
        line=min(lines) if lines else None,
    )


def _run_cache_problems(command: str, pip_cache_off: bool) -> list[str]:
    problems: list[str] = []
    segments = _COMMAND_SEPARATOR.split(command)
    if any(_APT.search(s) for s in segments) and not _APT_CLEANUP.search(command):
        problems.append("apt-get without rm -rf /var/lib/apt/lists/*")
    if not pip_cache_off and any(_PIP.search(s) and "--no-cache-dir" not in s for s in segments):
        problems.append("pip install without --no-cache-dir")
    if any(_APK.search(s) and "--no-cache" not in s for s in segments) and not _APK_CLEANUP.search(command):
        problems.append("apk add without --no-cache")
    return problems
