"""What to explain in an image: targets as objects.

A target chooses the classes explained from the model's output on the unmasked image:
`Top1()` (the default), `TopK(k)`, `Class(ids)`. A segmentation model's target is a
`Region`: the pixels each class is scored over and the class never chosen by itself.
Methods never know which kind of target they score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

__all__ = ["Class", "Region", "Target", "Top1", "TopK", "as_target"]


class Target:
    """Base of the targets: which classes of an output to explain."""

    def classes(self, output: NDArray[np.floating], count: int) -> list[int]:
        """The class ids to explain, given the model's C outputs for the image."""
        raise NotImplementedError

    @property
    def per_class(self) -> bool:
        """Whether the classes were asked for (a list of results is written per class)."""
        return True


@dataclass(frozen=True)
class Top1(Target):
    """The most likely class."""

    def classes(self, output: NDArray[np.floating], count: int) -> list[int]:
        return [int(np.argmax(np.nan_to_num(output, nan=-np.inf)))]

    @property
    def per_class(self) -> bool:
        return False


@dataclass(frozen=True)
class TopK(Target):
    """The `k` most likely classes, most likely first (all from the same forwards)."""

    k: int

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int | np.integer) or self.k < 1:
            raise ValueError(f"top_k must be an integer of at least 1, got {self.k!r}")

    def classes(self, output: NDArray[np.floating], count: int) -> list[int]:
        if self.k > count:
            raise ValueError(f"top_k must be between 1 and {count}, got {self.k}")
        order = np.argsort(-np.nan_to_num(output.astype(np.float64), nan=-np.inf),
                           kind="stable")
        return [int(i) for i in order[:self.k]]


@dataclass(frozen=True, init=False)
class Class(Target):
    """Given class ids, explained in the order given: ``Class(285)`` or ``Class([281, 285])``."""

    ids: tuple[int, ...]

    def __init__(self, ids: int | Sequence[int]) -> None:
        items = [ids] if isinstance(ids, int | np.integer) else list(ids)
        if not items:
            raise ValueError("target list is empty")
        for class_id in items:
            if isinstance(class_id, bool) or not isinstance(class_id, int | np.integer):
                raise TypeError(f"class ids must be integers, got {class_id!r}")
        object.__setattr__(self, "ids", tuple(int(i) for i in items))

    def classes(self, output: NDArray[np.floating], count: int) -> list[int]:
        for class_id in self.ids:
            if not 0 <= class_id < count:
                raise ValueError(f"class id {class_id} is out of range (0 to {count - 1})")
        return list(self.ids)


@dataclass(frozen=True)
class Region(Target):
    """A segmentation model's target: `of` chooses the classes (`Top1`, `TopK` or `Class`),
    each scored over `mask`.

    Args:
        mask: the pixels each class is scored over (an H×W mask, non-zero inside, at the
            image's or the output's size): a masked input's score is the sum of the class's
            output over them (pytorch-grad-cam's `SemanticSegmentationTarget`). Default: the
            pixels whose argmax is the class.
        of: the classes. Default: the class covering most pixels (`TopK`: the k covering
            most), the background excluded.
        background: a class never chosen by `Top1` or `TopK`. Default: the bundle's.
    """

    mask: NDArray | None = field(default=None, compare=False)
    of: Target = field(default_factory=Top1)
    background: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.of, Region):
            raise TypeError("a Region chooses its classes with Top1, TopK or Class")
        if self.background is not None and (isinstance(self.background, bool) or not
                                            isinstance(self.background, int | np.integer)
                                            or self.background < 0):
            raise ValueError(f"background must be a class id, got {self.background!r}")

    def classes(self, output: NDArray[np.floating], count: int) -> list[int]:
        return self.of.classes(output, count)

    @property
    def per_class(self) -> bool:
        return self.of.per_class


def as_target(target: Target | int | Sequence[int] | None) -> Target:
    """A target object from an object, a class id, a list of ids, or None (`Top1`)."""
    if target is None:
        return Top1()
    if isinstance(target, Target):
        return target
    if isinstance(target, bool):
        raise TypeError(f"class ids must be integers, got {target!r}")
    return Class(target)
