"""Inside Seldon MLServer: a runtime that explains as the service's V2 model does, a runtime
serving the bundle's model as a tensor model, and the folder `mlserver start` runs from.

`runtime` imports MLServer (the ``mlserver`` extra); `folder` does not, so that the folder can
be written where MLServer is not installed."""

from .folder import write_mlserver

__all__ = ["write_mlserver"]
