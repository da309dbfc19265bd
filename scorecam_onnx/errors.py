"""Exceptions raised by scorecam-onnx for problems the user can fix."""

from __future__ import annotations


class ScoreCamError(Exception):
    """Base class of every error the library raises on bad input or environment."""


class BundleError(ScoreCamError):
    """A bundle or an ONNX graph is missing, malformed or inconsistent."""


class ImageError(ScoreCamError):
    """An image cannot be read or decoded.

    Attributes:
        reason: what is wrong, without the image's name.
        source: the file or other source it came from, when known.
    """

    def __init__(self, reason: str, source: str | None = None) -> None:
        super().__init__(f"{source}: {reason}" if source else reason)
        self.reason = reason
        self.source = source


class ProviderError(ScoreCamError):
    """ONNX Runtime is missing or the requested execution provider cannot start."""
