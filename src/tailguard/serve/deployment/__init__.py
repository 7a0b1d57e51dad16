"""A deployment: facade (:class:`Deployment`), queue, batcher, supervisor and estimates."""

from typing import TYPE_CHECKING

from tailguard.lazy import lazy_getattr

if TYPE_CHECKING:
    from tailguard.serve.deployment.deployment import Deployment
    from tailguard.serve.deployment.view import LoadView

__all__ = ["Deployment", "LoadView"]
__getattr__ = lazy_getattr(__name__, {"Deployment": ".deployment", "LoadView": ".view"})
