"""Two-tier validation helpers: collect every problem with its YAML path, raise once.

Typed readers (:meth:`Section.get`) check presence, type and range of one key at a time and
record a problem instead of raising, so a user sees every mistake in a file in one run.
Unknown keys are problems too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sim.errors import ConfigError

_MISSING = object()


class Problems:
    """An ordered collection of ``(yaml_path, message)`` problems for one source file."""

    def __init__(self, source: str):
        self.source = source
        self.items: list[tuple[str, str]] = []

    def add(self, path: str, message: str) -> None:
        """Record one problem at ``path`` (dotted YAML path, ``a.b[2].c``).

        A message longer than a few lines (one quoting a huge value) is cut, so that every
        report stays readable whatever the file holds.
        """
        if len(message) > MAX_MESSAGE_CHARS:
            message = f"{message[:MAX_MESSAGE_CHARS]}... (message cut)"
        if len(path) > MAX_MESSAGE_CHARS:  # a huge unknown key
            path = f"{path[:MAX_SHOWN_CHARS]}..."
        self.items.append((path, message))

    def __bool__(self) -> bool:
        return bool(self.items)

    def bad(self, *paths: str) -> bool:
        """Whether a problem was recorded at, inside or above any of ``paths``.

        Tier-two checks use it to skip rules whose inputs were already reported, so one
        mistake gives one problem.
        """
        for recorded, _ in self.items:
            for p in paths:
                if recorded == p or recorded == "(top level)":
                    return True
                for a, b in ((recorded, p), (p, recorded)):
                    if a.startswith(b + ".") or a.startswith(b + "["):
                        return True
        return False

    def raise_if_any(self) -> None:
        """Raise a single :class:`ConfigError` listing every recorded problem."""
        if self.items:
            raise ConfigError(self.source, self.items)


def join(path: str, key: str | int) -> str:
    """Extend a dotted YAML path by a mapping key or a list index."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


#: Longest rendering of a user's value inside a message; longer ones are cut.
MAX_SHOWN_CHARS = 80
#: Longest single problem message (one that quotes a value a parser did not cut).
MAX_MESSAGE_CHARS = 400


def short_repr(value: Any, limit: int = MAX_SHOWN_CHARS) -> str:
    """``repr(value)`` cut to about ``limit`` characters, saying how much was left out.

    A message must stay one readable line whatever the user's file holds (a long string, a
    list of a million items), and must not cost the time and memory of rendering all of it.
    """
    if isinstance(value, (list, tuple, dict)) and len(value) > limit:
        head = list(value.items())[:limit] if isinstance(value, dict) else list(value[:limit])
        shown = repr(type(value)(head))[:limit]
        return f"{shown}... ({len(value):,} items)"
    if isinstance(value, str) and len(value) > 4 * limit:
        value = value[:4 * limit]  # repr only what can be shown
        text = repr(value)
        return f"{text[:limit]}... (a longer string)"
    text = repr(value)
    if len(text) > limit:
        return f"{text[:limit]}... ({len(text):,} characters)"
    return text


def type_name(value: Any) -> str:
    """Readable YAML-ish type name of ``value`` for error messages."""
    if value is None:
        return "null"
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "list",
            dict: "mapping"}.get(type(value), type(value).__name__)


class Section:
    """A YAML mapping at ``path`` being read key by key, with problems collected.

    Call :meth:`finish` after reading all known keys; every key not read is reported as
    unknown, with the list of valid keys.
    """

    def __init__(self, data: Any, path: str, problems: Problems):
        self.path = path
        self.problems = problems
        self.ok = True
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            problems.add(path or "(top level)", f"must be a mapping, got {type_name(data)}")
            data = {}
            self.ok = False
        self.data: Mapping[str, Any] = data
        self._known: list[str] = []

    def has(self, key: str) -> bool:
        """Whether ``key`` is present (and marks it as known)."""
        self._known.append(key)
        return key in self.data

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        """The raw value at ``key`` (marks it known); a missing required key is a problem."""
        self._known.append(key)
        if key in self.data:
            return self.data[key]
        if default is _MISSING:
            self.problems.add(join(self.path, key), "is required")
            return None
        return default

    def get(
        self,
        key: str,
        kind: type | tuple[type, ...] | Callable[[Any], Any],
        default: Any = _MISSING,
        *,
        lo: float | None = None,
        hi: float | None = None,
        choices: Iterable[Any] | None = None,
    ) -> Any:
        """Read ``key`` as ``kind`` with optional range or choices check.

        ``kind`` is a type (``int``, ``float``, ``bool``, ``str``) or a parser callable that
        raises ``ValueError`` with a message (the unit parsers in :mod:`sim.config.units`).
        Returns ``default`` (or ``None`` for a missing required key) after recording a problem.
        """
        path = join(self.path, key)
        value = self.raw(key, default)
        if key not in self.data:
            return value
        if isinstance(kind, type) or isinstance(kind, tuple):
            value = _check_type(value, kind, path, self.problems)
        else:
            try:
                value = kind(value)
            except (ValueError, TypeError) as exc:
                self.problems.add(path, str(exc))
                value = None
        if value is None:
            return default if default is not _MISSING else None
        if isinstance(value, float) and not math.isfinite(value):
            self.problems.add(path, f"must be a finite number, got {value}")
            return default if default is not _MISSING else None
        if choices is not None:
            options = list(choices)
            if value not in options:
                self.problems.add(path, f"must be one of {', '.join(map(str, options))}; "
                                        f"got {short_repr(value)}")
                return default if default is not _MISSING else None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            rng = f"{'-inf' if lo is None else _fmt(lo)}..{'inf' if hi is None else _fmt(hi)}"
            self.problems.add(path, f"must be in {rng}, got {_fmt(value)}")
            return default if default is not _MISSING else None
        return value

    def section(self, key: str, required: bool = False) -> Section:
        """The nested mapping at ``key`` as a :class:`Section` (empty when absent)."""
        self._known.append(key)
        if key not in self.data and required:
            self.problems.add(join(self.path, key), "is required")
        return Section(self.data.get(key), join(self.path, key), self.problems)

    def finish(self) -> None:
        """Report keys present in the YAML that nothing read."""
        for key in self.data:
            if key not in self._known:
                valid = ", ".join(sorted(set(self._known))) or "(none)"
                self.problems.add(join(self.path, str(key)),
                                  f"unknown key; valid keys here: {valid}")


def _fmt(x: Any) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def _check_type(value: Any, kind: type | tuple[type, ...], path: str, problems: Problems):
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
             list: "a list", dict: "a mapping"}
    want = " or ".join(names.get(k, k.__name__) for k in kinds)
    if bool in kinds:
        if isinstance(value, bool):
            return value
    elif isinstance(value, bool):
        problems.add(path, f"must be {want}, got boolean {value}")
        return None
    if float in kinds and isinstance(value, int):
        return float(value)
    if isinstance(value, kinds):
        return value
    problems.add(path, f"must be {want}, got {type_name(value)} {short_repr(value)}")
    return None
