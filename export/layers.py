"""Find the target layer of a PyTorch classifier, including modules that run several times."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from scorecam_onnx.errors import BundleError


@dataclass(frozen=True)
class LayerChoice:
    """A module and which of its calls in `forward` gives the activation map."""

    name: str
    call: int
    calls: int

    @property
    def label(self) -> str:
        """'name' for a module called once, 'name#k' otherwise."""
        return self.name if self.calls == 1 else f"{self.name}#{self.call}"


def _calls(model: nn.Module, example: torch.Tensor) -> list[tuple[str, tuple[int, ...] | None]]:
    """(module name, output shape) for every module call, in the order the calls finish."""
    record: list[tuple[str, tuple[int, ...] | None]] = []
    handles = []
    for name, module in model.named_modules():
        if not name:
            continue

        def hook(_m: nn.Module, _i: object, out: object, name: str = name) -> None:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else None
            record.append((name, shape))

        handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    return record


def resolve_layer(model: nn.Module, layer: str | None, example: torch.Tensor) -> LayerChoice:
    """Resolve 'name', 'name#k' (k may be negative) or None (automatic) to one module call.

    Automatic: the last module call whose output is 4-D with a spatial size above 1. A module
    that runs more than once must be given with '#k'; it is never guessed silently.
    """
    calls = _calls(model, example)
    if layer is None:
        for position in range(len(calls) - 1, -1, -1):
            name, shape = calls[position]
            if shape is not None and len(shape) == 4 and shape[2] * shape[3] > 1:
                before = sum(1 for n, _ in calls[:position] if n == name)
                total = sum(1 for n, _ in calls if n == name)
                return LayerChoice(name, before, total)
        raise BundleError("no module produces a 4-D output with a spatial size above 1: "
                          "give --layer")
    name, _, index_text = layer.partition("#")
    modules = dict(model.named_modules())
    if not name or name not in modules:
        close = [n for n in modules if n and name and name.split(".")[-1] in n][:5]
        hint = f" (similar: {', '.join(close)})" if close else ""
        raise BundleError(f"no module named {name!r} in the model{hint}")
    shapes = [shape for n, shape in calls if n == name]
    if not shapes:
        raise BundleError(f"module {name!r} is not called by forward()")
    if index_text:
        try:
            index = int(index_text)
        except ValueError:
            raise BundleError(
                f"bad call index in {layer!r}: use NAME#K with an integer K"
            ) from None
        if not -len(shapes) <= index < len(shapes):
            raise BundleError(f"module {name!r} runs {len(shapes)} times; #{index} is out of range")
        index %= len(shapes)
    elif len(shapes) > 1:
        raise BundleError(
            f"module {name!r} runs {len(shapes)} times in forward(); pick one call with "
            f"'{name}#K' (K from 0 to {len(shapes) - 1}, or -1 for the last)"
        )
    else:
        index = 0
    shape = shapes[index]
    if shape is None or len(shape) not in (3, 4):
        raise BundleError(f"layer {layer!r} outputs {shape}: expected a 4-D activation map "
                          "or N×L×C tokens")
    return LayerChoice(name, index, len(shapes))
