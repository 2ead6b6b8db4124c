"""Options that several commands share, declared once as a group.

Typer reads a command's options from its function's signature, so options that
``segment`` and ``sweep`` both take would otherwise be written out in both
signatures. Instead a command takes the whole group as one parameter annotated
with a frozen dataclass whose fields are the ``Annotated`` Typer options, and
:func:`expand_option_groups` shows Typer the group's fields in that parameter's
place, then hands the command the group built from them.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from typing import Any, Callable


def expand_option_groups(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give ``command`` each option of its option-group parameters, in their place.

    A parameter whose annotation is a dataclass is an option group: in the
    signature Typer reads it becomes one parameter per field, in field order, with
    the field's annotation (its ``typer.Option``) and a default taken from the
    parameter's default instance. So a command sets its own defaults, e.g.
    ``engine: Engine = Engine(n_init="auto")``, and ``--help`` lists the options
    exactly as if they had been written out. Two groups, or a group and the
    command, naming the same option fail here, at import.

    Apply it below ``@app.command()``.
    """
    signature = inspect.signature(command, eval_str=True)
    groups: dict[str, tuple[type, list[str]]] = {}
    parameters = []
    for parameter in signature.parameters.values():
        group = parameter.annotation
        if not (isinstance(group, type) and dataclasses.is_dataclass(group)):
            parameters.append(parameter)
            continue
        defaults = group() if parameter.default is inspect.Parameter.empty else parameter.default
        hints = typing.get_type_hints(group, include_extras=True)
        names = [field.name for field in dataclasses.fields(group)]
        for name in names:
            parameters.append(
                inspect.Parameter(name, parameter.kind, default=getattr(defaults, name), annotation=hints[name])
            )
        groups[parameter.name] = (group, names)

    @functools.wraps(command)
    def run(**values):
        for parameter_name, (group, names) in groups.items():
            values[parameter_name] = group(**{name: values.pop(name) for name in names})
        return command(**values)

    # inspect.Signature rejects a name given twice, which catches clashing groups.
    run.__signature__ = signature.replace(parameters=parameters)
    run.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
    return run
