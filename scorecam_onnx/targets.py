"""What to explain in an image: targets as objects.

A target chooses the classes explained from the model's output on the unmasked image:
`Top1()` (the default), `TopK(k)`, `Class(ids)`. A segmentation model's target is a
`Region`: the pixels each class is scored over and the class never chosen by itself.

On an object detector the same targets choose detections of the unmasked image: `Top1()`
every detection above the score threshold (at most `max_detections`), `TopK(k)` the k best,
`Class(ids)` those of the classes. `Box` (or `Boxes`) explains given boxes instead.
Methods never know which kind of target they score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

__all__ = ["Box", "Boxes", "Class", "Region", "Target", "Top1", "TopK", "as_target"]


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
        order = np.argsort(-np.nan_to_num(output.astype(np.float64), nan=-np.inf), kind="stable")
        return [int(i) for i in order[: self.k]]


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

    mask: NDArray[Any] | None = field(default=None, compare=False)
    of: Target = field(default_factory=Top1)
    background: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.of, Region):
            raise TypeError("a Region chooses its classes with Top1, TopK or Class")
        if self.background is not None and (
            isinstance(self.background, bool)
            or not isinstance(self.background, int | np.integer)
            or self.background < 0
        ):
            raise ValueError(f"background must be a class id, got {self.background!r}")

    def classes(self, output: NDArray[np.floating], count: int) -> list[int]:
        return self.of.classes(output, count)

    @property
    def per_class(self) -> bool:
        return self.of.per_class


@dataclass(frozen=True)
class Box(Target):
    """A detector's box to explain, in the original image's pixels (x1, y1, x2, y2).

    Args:
        class_id: the class it is explained for. Default: the class of the unmasked image's
            detection that overlaps it most.
    """

    x1: float
    y1: float
    x2: float
    y2: float
    class_id: int | None = None

    def __post_init__(self) -> None:
        corners = (self.x1, self.y1, self.x2, self.y2)
        if not all(
            isinstance(v, int | float | np.number) and not isinstance(v, bool) and np.isfinite(v)
            for v in corners
        ):
            raise ValueError(f"a box is four finite numbers, got {corners!r}")
        if not (self.x2 > self.x1 and self.y2 > self.y1):
            raise ValueError(f"a box needs x2 > x1 and y2 > y1, got {corners!r}")
        if self.class_id is not None and (
            isinstance(self.class_id, bool)
            or not isinstance(self.class_id, int | np.integer)
            or self.class_id < 0
        ):
            raise ValueError(f"a box's class must be a class id, got {self.class_id!r}")

    @property
    def corners(self) -> tuple[float, float, float, float]:
        """(x1, y1, x2, y2)."""
        return (float(self.x1), float(self.y1), float(self.x2), float(self.y2))

    def classes(self, output: NDArray[np.floating], count: int) -> list[int]:
        raise ValueError("a box is a detector's target; this model is not a detector")


@dataclass(frozen=True, init=False)
class Boxes(Target):
    """Several boxes of a detector, explained from the same forwards, in the order given."""

    items: tuple[Box, ...]

    def __init__(self, items: Sequence[Box]) -> None:
        boxes = tuple(items)
        if not boxes or not all(isinstance(b, Box) for b in boxes):
            raise ValueError("Boxes takes one or more Box targets")
        object.__setattr__(self, "items", boxes)

    def classes(self, output: NDArray[np.floating], count: int) -> list[int]:
        raise ValueError("a box is a detector's target; this model is not a detector")


def as_target(target: Target | int | Sequence[int] | Sequence[Box] | None) -> Target:
    """A target object from an object, a class id, a list of ids or boxes, or None
    (`Top1`)."""
    if target is None:
        return Top1()
    if isinstance(target, Target):
        return target
    if isinstance(target, list | tuple) and target and all(isinstance(t, Box) for t in target):
        return Boxes(target)
    if isinstance(target, bool):
        raise TypeError(f"class ids must be integers, got {target!r}")
    return Class(cast(int | Sequence[int], target))
