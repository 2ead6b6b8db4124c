"""How ``--help`` shows options: a flag as its name alone, a value option with its type.

Typer's help puts each option's type beside its name (``--k <int>``), flags
included (``--force <bool>``, ``--help <bool>``), which reads as if a flag took a
value. The command and group classes here give every flag an empty metavar, so that
its type column stays blank; options that take a value keep theirs.
"""

from __future__ import annotations

from typer.core import TyperCommand, TyperGroup


class _FlagsWithoutType:
    def get_params(self, ctx):
        params = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params


class Command(_FlagsWithoutType, TyperCommand):
    """A command whose flags show no type in ``--help``."""


class Group(_FlagsWithoutType, TyperGroup):
    """The ``gpukmeans`` group, whose own flags (``--version``, ``--help``) show no type."""
