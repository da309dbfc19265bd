"""Find the target layer of a PyTorch classifier: a module call's output (or input), read as a
feature map (NCHW or NHWC) or as tokens, chosen automatically or named by the user."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from scorecam_onnx.bundle.tokens import map_layouts
from scorecam_onnx.errors import BundleError

POINTS = ("output", "input")


@dataclass(frozen=True)
class Call:
    """One module call of a forward: what went in and what came out (first tensors), and
    whether it only handed on the tensor of the call that finished just before, unchanged (a
    container such as `nn.Sequential` returning its last child's output). A call that changed
    that tensor in place (an in-place activation, a block's `+=` of its residual) did not."""

    name: str
    kind: str
    input: tuple[int, ...] | None
    output: tuple[int, ...] | None
    passthrough: bool = False


@dataclass(frozen=True)
class LayerChoice:
    """A module, which of its calls, and whether its output or its input is the target.

    `layout` is how a 4-D target reads ("NCHW" or "NHWC"; None for tokens), `reason` says in
    a few words why it was chosen.
    """

    name: str
    call: int
    calls: int
    point: str = "output"
    layout: str | None = None
    shape: tuple[int, ...] | None = None
    reason: str = "given with --layer"

    @property
    def label(self) -> str:
        """'name', 'name#k' for a module called more than once, ':input' for its input."""
        text = self.name if self.calls == 1 else f"{self.name}#{self.call}"
        return text if self.point == "output" else f"{text}:{self.point}"


def first_tensor(value: object) -> torch.Tensor | None:
    """The tensor a module call yields: itself, or the first of a tuple or a ModelOutput."""
    if isinstance(value, torch.Tensor):
        return value
    items: Iterable[object] = ()
    if isinstance(value, Mapping):
        items = value.values()
    elif isinstance(value, tuple | list):
        items = value
    return next((v for v in items if isinstance(v, torch.Tensor)), None)


def _shape(value: object) -> tuple[int, ...] | None:
    tensor = first_tensor(value)
    return tuple(tensor.shape) if tensor is not None else None


def record_calls(model: nn.Module, example: torch.Tensor) -> list[Call]:
    """Every module call of one forward, in the order the calls finish."""
    record: list[Call] = []
    last: list[tuple[torch.Tensor | None, int]] = [(None, 0)]
    handles = []
    for name, module in model.named_modules():
        if not name:
            continue

        def hook(m: nn.Module, args: tuple, kwargs: dict, out: object, name: str = name) -> None:
            tensor = first_tensor(out)
            version = tensor._version if tensor is not None else 0
            handed_on = tensor is not None and tensor is last[0][0] and version == last[0][1]
            record.append(
                Call(
                    name,
                    type(m).__name__,
                    _shape((*args, *kwargs.values())),
                    _shape(out),
                    handed_on,
                )
            )
            last[0] = (tensor, version)

        handles.append(module.register_forward_hook(hook, with_kwargs=True))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    return record


def resolve_layer(
    model: nn.Module, layer: str | None, example: torch.Tensor, layout: str | None = None
) -> LayerChoice:
    """Resolve 'NAME[#K][:input]' (K may be negative) or None (automatic) to one module call.

    Automatic: in a transformer (blocks holding two or more norms over N×L×C tokens), the
    input of the last block's first norm; otherwise the last module output that is a feature
    map of the input (4-D, two sides a grid of the input size), NCHW or NHWC by its shape.
    Never an attention-internal tensor, nor a patch embedding followed by token blocks.
    `layout` forces how a 4-D target is read. A module that runs more than once must be
    given with '#K'; it is never guessed silently.
    """
    calls = record_calls(model, example)
    size = (int(example.shape[2]), int(example.shape[3]))
    if layer is None:
        return _automatic(calls, size, layout)
    return _named(model, calls, layer, size, layout)


def _is_token_norm(call: Call) -> bool:
    norm = call.kind.endswith(("LayerNorm", "RMSNorm", "RmsNorm"))
    return norm and call.input is not None and len(call.input) == 3 and call.input[1] > 1


def _automatic(calls: list[Call], size: tuple[int, int], forced: str | None) -> LayerChoice:
    norms = [(i, c) for i, c in enumerate(calls) if _is_token_norm(c)]
    parents: dict[str, list[int]] = {}
    for i, c in norms:
        parents.setdefault(c.name.rpartition(".")[0], []).append(i)
    blocks = {p: idx for p, idx in parents.items() if len(idx) >= 2}
    if blocks:
        last = max(blocks, key=lambda p: blocks[p][-1])
        position = blocks[last][0]
        call = calls[position]
        assert call.input is not None
        return _choice(
            calls,
            position,
            "input",
            None,
            call.input,
            f"automatic: input of the last transformer block's first norm ({last or 'the model'})",
        )
    maps = []
    for position in range(len(calls) - 1, -1, -1):
        shape = calls[position].output
        if shape is None or len(shape) != 4 or calls[position].passthrough:
            continue
        fits = (forced,) if forced else map_layouts(shape, size)
        if fits:
            maps.append((position, fits))
    if not maps:
        raise BundleError(
            "no module outputs a feature map of the input (4-D, with sides that "
            "divide the input size): give --layer"
        )
    position, fits = maps[0]
    call = calls[position]
    assert call.output is not None
    tokens_after = sum(
        1
        for c in calls[position + 1 :]
        if c.output is not None and len(c.output) == 3 and c.output[1] > 1
    )
    if tokens_after >= 4 and tokens_after * 2 > len(calls) - position - 1:
        raise BundleError(
            f"the last feature map, {call.name} ({_dims(call.output)}), feeds "
            f"{tokens_after} module calls on token sequences: it is a patch "
            "embedding, not a target; give --layer (the input of the last "
            "block's first norm, NAME:input)"
        )
    if len(fits) > 1:
        layouts = _model_layouts(calls, size)
        if len(layouts) != 1:
            listed = "; ".join(f"{calls[p].name} {_dims(calls[p].output)}" for p, _ in maps[:5])
            raise BundleError(
                f"{call.name} outputs {_dims(call.output)}, which reads as NCHW "
                f"and as NHWC: give --layer and --activation-layout (feature "
                f"maps, last first: {listed})"
            )
        fits = layouts
    return _choice(
        calls,
        position,
        "output",
        fits[0],
        call.output,
        "automatic: the last feature map of the input",
    )


def _model_layouts(calls: list[Call], size: tuple[int, int]) -> tuple[str, ...]:
    """The layouts of the model's unambiguous feature maps."""
    seen = set()
    for c in calls:
        if c.output is not None and len(c.output) == 4:
            fits = map_layouts(c.output, size)
            if len(fits) == 1:
                seen.add(fits[0])
    return tuple(sorted(seen))


def _named(
    model: nn.Module, calls: list[Call], layer: str, size: tuple[int, int], forced: str | None
) -> LayerChoice:
    spec, _, point = layer.partition(":")
    point = point or "output"
    if point not in POINTS:
        raise BundleError(f"bad layer {layer!r}: use NAME, NAME#K, NAME:input or NAME#K:input")
    name, _, index_text = spec.partition("#")
    modules = dict(model.named_modules())
    if not name or name not in modules:
        close = [n for n in modules if n and name and name.split(".")[-1] in n][:5]
        hint = f" (similar: {', '.join(close)})" if close else ""
        raise BundleError(f"no module named {name!r} in the model{hint}")
    positions = [i for i, c in enumerate(calls) if c.name == name]
    if not positions:
        raise BundleError(f"module {name!r} is not called by forward()")
    if index_text:
        try:
            index = int(index_text)
        except ValueError:
            raise BundleError(
                f"bad call index in {layer!r}: use NAME#K with an integer K"
            ) from None
        if not -len(positions) <= index < len(positions):
            raise BundleError(
                f"module {name!r} runs {len(positions)} times; #{index} is out of range"
            )
        index %= len(positions)
    elif len(positions) > 1:
        raise BundleError(
            f"module {name!r} runs {len(positions)} times in forward(); pick one call with "
            f"'{name}#K' (K from 0 to {len(positions) - 1}, or -1 for the last)"
        )
    else:
        index = 0
    position = positions[index]
    call = calls[position]
    shape = call.output if point == "output" else call.input
    if shape is None or len(shape) not in (3, 4):
        raise BundleError(
            f"layer {layer!r} {'outputs' if point == 'output' else 'takes'} "
            f"{_dims(shape)}: expected a 4-D activation map or N×L×C tokens"
        )
    layout = None
    if len(shape) == 4:
        fits = (forced,) if forced else map_layouts(shape, size)
        if not fits:
            raise BundleError(
                f"layer {layer!r} gives {_dims(shape)}: neither NCHW nor NHWC "
                f"reads it as a feature map of the {size[0]}×{size[1]} input "
                "(an attention-internal tensor?); pick another layer, or give "
                "--activation-layout to read it anyway"
            )
        # ambiguous: PyTorch's own layout, unless the model's other maps say NHWC
        layouts = _model_layouts(calls, size)
        layout = fits[0] if len(fits) == 1 else ("NHWC" if layouts == ("NHWC",) else "NCHW")
    return _choice(calls, position, point, layout, shape, "given with --layer")


def _choice(
    calls: list[Call],
    position: int,
    point: str,
    layout: str | None,
    shape: tuple[int, ...],
    reason: str,
) -> LayerChoice:
    call = calls[position]
    same = [i for i, c in enumerate(calls) if c.name == call.name]
    return LayerChoice(call.name, same.index(position), len(same), point, layout, shape, reason)


def _dims(shape: tuple[int, ...] | None) -> str:
    return "no tensor" if shape is None else "×".join(str(d) for d in shape)
