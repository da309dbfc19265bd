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


def provider_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """'auto', a short provider name or a full one; availability is checked when used."""
    from .runtime import PROVIDERS

    if value == "auto" or value.lower() in PROVIDERS or value.endswith("ExecutionProvider"):
        return value
    raise click.BadParameter(f"unknown provider {value!r}: use auto, a short name "
                             f"({', '.join(PROVIDERS)}) or a full ONNX Runtime name")


def provider_libraries(ctx: click.Context, param: click.Parameter,
                       values: tuple[str, ...]) -> dict[str, str] | None:
    """NAME=PATH pairs, each registered with ONNX Runtime as a plugin provider library."""
    from .errors import ProviderError
    from .runtime import register_provider_library

    libraries = key_values(ctx, param, values) or {}
    for name, path in libraries.items():
        try:
            register_provider_library(name, path)
        except ProviderError as exc:
            raise click.BadParameter(str(exc)) from None
    return libraries or None
