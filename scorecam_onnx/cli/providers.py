"""`providers`: the execution providers of this ONNX Runtime installation."""

from __future__ import annotations

import click

from .common import provider_libraries


@click.command()
@click.option(
    "--provider-library",
    "provider_libraries",
    multiple=True,
    callback=provider_libraries,
    metavar="NAME=PATH",
    expose_value=False,
    help="Register a plugin provider library first (ONNX Runtime ≥ 1.23).",
)
def providers() -> None:
    """List the execution providers this ONNX Runtime installation offers."""
    from ..runners.ort import available_providers, full_name, import_onnxruntime, plugin_devices

    ort = import_onnxruntime()
    click.echo(
        f"onnxruntime {ort.__version__}; --provider auto picks cuda when a CUDA session "
        "starts, else cpu"
    )
    for name in available_providers():
        click.echo(f"{name:<10} {full_name(name)}")
    for device in plugin_devices():
        if device.ep_name not in ort.get_available_providers():
            click.echo(f"{device.ep_name} (plugin) on {device.device.type.name}")
