"""The `scorecam-onnx` command group, a thin layer over the Python API.

Exit codes: 0 success; 1 an error, or some inputs failed (the others are still done);
2 a usage error (bad flag or value).
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

import click

from .. import __version__
from ..errors import ScoreCamError
from .bundle import export, info, layers, quantize, split
from .compare import compare, sanity
from .evaluation import bench, evaluate
from .explain import explain
from .mlserver import mlserver
from .providers import providers
from .serve import serve
from .triton import triton


class _Group(click.Group):
    """Turns library errors into one-line messages (exit 1) instead of tracebacks."""

    def invoke(self, ctx: click.Context) -> Any:
        warnings.showwarning = _note
        try:
            return super().invoke(ctx)
        except ScoreCamError as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


def _note(message: Warning | str, *_: Any, **__: Any) -> None:
    """A library warning as one line on stderr (no source file or line)."""
    click.echo(f"note: {message}", err=True)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="scorecam-onnx")
def main() -> None:
    """Explain image classifiers with Score-CAM on ONNX Runtime (no PyTorch needed)."""


for command in (
    explain,
    evaluate,
    compare,
    sanity,
    bench,
    providers,
    export,
    split,
    layers,
    info,
    quantize,
    serve,
    triton,
    mlserver,
):
    main.add_command(command)
