"""Exceptions that report a user's mistake in one clear message.

Every error a user can cause (bad YAML, a missing data set, an impossible mapping) derives
from :class:`UserError`; the CLI prints its message and exits non-zero instead of showing a
traceback. Anything else escaping the CLI is a bug in imcsim.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input, reported without a traceback.

    ``exit_code`` is what the command-line interface exits with.
    """

    exit_code = 2


class ConfigError(UserError):
    """One or more problems in a YAML file, each line carrying its YAML path.

    Attributes:
        source: the file (or a label) the problems were found in.
        problems: ``(yaml_path, message)`` pairs, in the order they were found.
    """

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = list(problems)
        lines = [f"{source}: {len(self.problems)} problem(s)"]
        lines += [f"  {path}: {msg}" if path else f"  {msg}" for path, msg in self.problems]
        super().__init__("\n".join(lines))

    def __reduce__(self):  # raised in a worker process, re-raised in the parent
        return (type(self), (self.source, self.problems))


class MappingError(UserError):
    """A model or layer that cannot be placed on the chosen architecture."""


class DataError(UserError):
    """A data set or checkpoint that is missing or malformed."""


class OutputError(UserError, OSError):
    """An output location that cannot be written: no permission, a full disk, a file in the
    way. It is also an :class:`OSError`, so code that tolerates a failed optional write (a
    cache) keeps catching it as one.

    Attributes:
        path: the file or folder that could not be written.
        reason: why, in words (the operating system's reason).
    """

    def __init__(self, path: object, reason: str, errno: int = 0):
        OSError.__init__(self, errno, reason, str(path))
        self.path = str(path)
        self.reason = reason

    def __str__(self) -> str:
        return f"cannot write {self.path}: {self.reason}"

    def __reduce__(self):  # OSError's own would pass (errno, reason, path) in that order
        return (type(self), (self.path, self.reason, self.errno or 0))


class InvariantError(RuntimeError):
    """A simulator invariant was violated (negative energy, non-integer cycles, ...).

    This is a bug in imcsim, never a user's mistake, so it is not a :class:`UserError`.
    """
