"""Option helpers shared by the command modules."""

from __future__ import annotations

import click


def key_values(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]):
    """KEY=VALUE pairs into a dict (None when there are none)."""
    pairs = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {value!r}")
        pairs[key] = text
    return pairs or None
