"""Exceptions raised by scorecam-onnx for problems the user can fix."""

from __future__ import annotations


class ScoreCamError(Exception):
    """Base class of every error the library raises on bad input or environment."""


class BundleError(ScoreCamError):
    """A bundle or an ONNX graph is missing, malformed or inconsistent."""


class ImageError(ScoreCamError):
    """An image cannot be read or decoded."""


class ProviderError(ScoreCamError):
    """ONNX Runtime is missing or the requested execution provider cannot start."""
