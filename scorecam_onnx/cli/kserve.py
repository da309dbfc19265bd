"""The flags KServe's controller passes to a custom explainer container, for `serve`."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

PROTOCOLS = ("v1", "v2", "grpc-v2")


@dataclass(frozen=True)
class KServeFlags:
    """--model_name, --predictor_host, --http_port, --predictor_protocol, --predictor_use_ssl."""

    model_name: str | None = None
    predictor_host: str | None = None
    http_port: int | None = None
    protocol: str = "v1"
    ssl: bool = False

    @property
    def active(self) -> bool:
        return self.predictor_host is not None or self.model_name is not None

    def predictor_url(self) -> str:
        """The predictor's model URL for the remote forwards."""
        if not self.model_name or not self.predictor_host:
            raise click.UsageError(
                "as a KServe explainer, give both --model_name and --predictor_host"
            )
        if self.protocol == "v1":
            raise click.UsageError(
                "--predictor_protocol v1 cannot carry the explainer's forwards (tensors of "
                "masked images); serve the classifier over the Open Inference Protocol and add "
                "--predictor_protocol v2 (or grpc-v2) to the explainer's arguments"
            )
        host = self.predictor_host
        if ":" not in host.rpartition("]")[2]:
            host += ":443" if self.ssl else ":80"
        scheme = (
            ("grpcs" if self.ssl else "grpc")
            if self.protocol == "grpc-v2"
            else ("https" if self.ssl else "http")
        )
        return f"{scheme}://{host}/v2/models/{self.model_name}"


def _truth(ctx: click.Context, param: click.Parameter, value: str | None) -> bool:
    if value is None:
        return False
    text = value.strip().lower()
    if text in ("1", "true", "yes", "y", "on", "t"):
        return True
    if text in ("0", "false", "no", "n", "off", "f"):
        return False
    raise click.BadParameter(f"expected true or false, got {value!r}")


def kserve_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add KServe's explainer flags, gathered into one `kserve` argument."""

    @functools.wraps(func)
    def wrapper(
        *args: Any,
        model_name: str | None,
        predictor_host: str | None,
        http_port: int | None,
        predictor_protocol: str,
        predictor_use_ssl: bool,
        **kwargs: Any,
    ) -> Any:
        flags = KServeFlags(
            model_name, predictor_host, http_port, predictor_protocol, predictor_use_ssl
        )
        return func(*args, kserve=flags, **kwargs)

    options = [
        click.option("--model_name", help="KServe: the InferenceService's model name."),
        click.option("--predictor_host", help="KServe: the predictor's HOST[:PORT]."),
        click.option(
            "--http_port",
            type=click.IntRange(0, 65535),
            help="KServe: the port to listen on (overrides --port).",
        ),
        click.option(
            "--predictor_protocol",
            type=click.Choice(PROTOCOLS),
            default="v1",
            show_default=True,
            help="KServe: how the predictor is called.",
        ),
        click.option(
            "--predictor_use_ssl",
            callback=_truth,
            metavar="true|false",
            help="KServe: TLS to the predictor.",
        ),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper
