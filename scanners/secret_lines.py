"""detect-secrets' per-line scan, with its plugins and filters bound once instead of on every call.

detect-secrets (1.5) runs every line filter and every plugin on every line through a generic
injector that inspects the callee on each call; on a large tree that costs more than the
detection itself. :class:`LineScanner` runs the same plugins and the same filters with the same
arguments and the same rules (a filter that does not accept the offered arguments is skipped,
as detect-secrets skips it on ``TypeError``), but resolves which arguments each callee takes
once, and runs the line filters only on lines where a plugin found something.
``tests/unit/test_secrets_scanner.py`` checks that it finds exactly what
``detect_secrets.core.scan`` finds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from detect_secrets.core import scan as ds_scan
from detect_secrets.core.potential_secret import PotentialSecret
from detect_secrets.settings import get_plugins
from detect_secrets.util.code_snippet import get_code_snippet

Bound = tuple[Callable[..., Any], frozenset[str]]


def _parameters(func: Callable[..., Any]) -> frozenset[str]:
    target = getattr(func, "__func__", func)
    code = target.__code__
    names = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
    # A bound method gets its instance from the binding, not from the arguments.
    return frozenset(names[1:] if hasattr(func, "__self__") else names)


def _call(bound: Bound, arguments: dict[str, Any]) -> Any:
    func, names = bound
    return func(**{key: value for key, value in arguments.items() if key in names})


def _filtered(filters: Sequence[Bound], arguments: dict[str, Any]) -> bool:
    for bound in filters:
        try:
            if _call(bound, arguments):
                return True
        except TypeError:
            continue
    return False


class LineScanner:
    """The plugins and filters of the current detect-secrets settings, ready to run on lines."""

    def __init__(self) -> None:
        self.plugins: list[tuple[Any, Bound]] = [
            (p, (p.analyze_line, _parameters(p.analyze_line))) for p in get_plugins()
        ]
        self.line_filters = self._filters("line")
        self.secret_filters = self._filters("secret")
        self.context_filters = self._filters("context")

    @staticmethod
    def _filters(parameter: str) -> list[Bound]:
        return [(f, frozenset(f.injectable_variables)) for f in ds_scan.get_filters_with_parameter(parameter)]

    def scan(self, lines: Sequence[str], filename: str) -> Iterator[PotentialSecret]:
        """What ``detect_secrets.core.scan._process_line_based_plugins`` yields for these lines."""
        content = list(lines)
        for number, raw in enumerate(content, start=1):
            line = raw.rstrip()
            snippet = get_code_snippet(lines=content, line_number=number)
            arguments = {"filename": filename, "line": line, "line_number": number, "context": snippet}
            candidates = [
                (plugin, secret) for plugin, analyze in self.plugins for secret in _call(analyze, arguments) or ()
            ]
            # detect-secrets applies the line filters before the plugins. Both are pure
            # predicates, so applying the filters only where a plugin found something gives the
            # same result, and most lines have nothing to filter.
            if not candidates or _filtered(self.line_filters, arguments):
                continue
            for plugin, secret in candidates:
                common = {"filename": secret.filename, "secret": secret.secret_value, "plugin": plugin, "line": line}
                if _filtered(self.secret_filters, common):
                    continue
                if _filtered(self.context_filters, {**common, "context": snippet}):
                    continue
                yield secret
