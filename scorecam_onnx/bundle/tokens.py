"""Reading activation shapes against the input size: where the patch grid lies in N×L×C
tokens (vision transformers), and which layouts a 4-D tensor fits (NCHW or NHWC stages)."""

from __future__ import annotations

from ..errors import BundleError

# Leading tokens considered when none are named: class, distillation and a few registers.
MAX_PREFIX = 8


def grid_candidates(
    length: int, size: tuple[int, int], max_prefix: int = MAX_PREFIX
) -> list[tuple[int, int, int]]:
    """Every (P, gh, gw) with L − P = gh·gw patches of a square patch size dividing the input.

    A grid of 1×1 is not a map and is left out.
    """
    height, width = size
    found = []
    for prefix in range(0, min(max_prefix, length - 1) + 1):
        patches = length - prefix
        for patch in range(1, min(height, width) + 1):
            if height % patch or width % patch:
                continue
            gh, gw = height // patch, width // patch
            if gh * gw == patches and gh * gw > 1:
                found.append((prefix, gh, gw))
    return found


def infer_grid(
    length: int, size: tuple[int, int], prefix: int | None = None
) -> tuple[int, int, int]:
    """(P, gh, gw) for L tokens of an input of `size`, when only one reading fits.

    Args:
        length: L, the number of tokens.
        size: the model's input (height, width).
        prefix: P when the model says it (e.g. a class token); None to infer it.

    Raises:
        BundleError: no reading, or several (then `--tokens P:GHxGW` decides).
    """
    found = grid_candidates(length, size, MAX_PREFIX if prefix is None else length)
    if prefix is not None:
        found = [c for c in found if c[0] == prefix]
    if len(found) == 1:
        return found[0]
    readings = ", ".join(f"{p}:{gh}x{gw}" for p, gh, gw in found)
    what = f"{length} tokens at input {size[0]}×{size[1]}" + (
        f" with {prefix} leading tokens" if prefix is not None else ""
    )
    if not found:
        raise BundleError(f"{what}: no patch grid fits; give --tokens P:GHxGW")
    raise BundleError(
        f"{what} could be read as {readings} (leading tokens:grid); give --tokens P:GHxGW"
    )


def check_grid(length: int, tokens: tuple[int, int, int]) -> tuple[int, int, int]:
    """A user's (P, gh, gw), checked against the tensor's L."""
    prefix, gh, gw = tokens
    if prefix < 0 or gh < 1 or gw < 1 or prefix + gh * gw != length or gh * gw <= 1:
        raise BundleError(
            f"--tokens {prefix}:{gh}x{gw} does not fit a tensor of {length} "
            f"tokens (P + GH·GW must be {length}, with a grid above 1×1)"
        )
    return tokens


def is_grid(height: int, width: int, size: tuple[int, int]) -> bool:
    """Whether an h×w map (above 1×1) is the input's size divided by one stride, each side
    rounded down or up (as strided convolutions and pools with padding give)."""
    full_h, full_w = size
    if height * width <= 1 or height > full_h or width > full_w:
        return False
    return any(
        height in (full_h // s, -(-full_h // s)) and width in (full_w // s, -(-full_w // s))
        for s in range(1, max(full_h, full_w) + 1)
    )


def map_layouts(shape: tuple[int, ...], size: tuple[int, int]) -> tuple[str, ...]:
    """The layouts ("NCHW", "NHWC") in which a 4-D N×a×b×c tensor is a feature map of an
    input of `size`: its two spatial sides a grid of the input, the channels the third side.

    None fits an attention-internal tensor (N×heads×L×d); both fit only when the channels
    equal a spatial side (N×16×16×16 at 32×32).
    """
    _, a, b, c = shape
    return tuple(
        layout for layout, (h, w) in (("NCHW", (b, c)), ("NHWC", (a, b))) if is_grid(h, w, size)
    )
