"""The command line's parameter types, each bounded: an option's value is refused in one line naming the
option (click's `Invalid value for '--db'`), before anything runs.

- Paths (`FilePath`, `DirectoryPath`): what ledger/paths.py allows, a regular file or a directory, so a
  FIFO or a device given as a file is refused at once instead of blocking the command forever.
- Numbers (`Int`, `Float`): an explicit range. An integer has a maximum that fits SQLite's 64-bit integers
  (a bigger one would end in an OverflowError as a query's parameter); a float is finite (`inf`, `nan`
  and `1e400` are refused).
- `TreeSize`: `prove --consistency`'s OLD and NEW, an event count or a checkpoint file.
"""

import math
import re

import click

from .paths import PathError, check_directory, check_file

INT64_MAX = 2**63 - 1  # SQLite's largest integer


class FilePath(click.Path):
    """A file: missing (unless `exists`), or regular."""

    def __init__(self, exists=False):
        super().__init__(exists=exists, dir_okay=False)

    def convert(self, value, param, ctx):
        value = super().convert(value, param, ctx)
        try:
            return check_file(value)
        except PathError as error:
            self.fail(str(error), param, ctx)


class DirectoryPath(click.Path):
    """A directory: missing (to be made), or one."""

    def __init__(self):
        super().__init__(file_okay=False)

    def convert(self, value, param, ctx):
        value = super().convert(value, param, ctx)
        try:
            return check_directory(value)
        except PathError as error:
            self.fail(str(error), param, ctx)


class Int(click.IntRange):
    """An integer from `min` to `max` (at most SQLite's)."""

    def __init__(self, min, max=INT64_MAX):
        super().__init__(min, max)


class Float(click.FloatRange):
    """A finite number from `min` to `max` (None: unbounded, but finite)."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


class TreeSize(click.ParamType):
    """A tree for `prove --consistency`: an event count (int), or a checkpoint file (its path, str)."""

    name = "tree"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        if re.fullmatch(r"[0-9]+", value, re.ASCII):
            return Int(0).convert(value, param, ctx)
        return FilePath(exists=True).convert(value, param, ctx)
