"""Model API and built-in models."""

from tailguard.models.base import Model, ModelError, load_model_class
from tailguard.tensors import Tensors, TensorSpec

__all__ = ["Model", "ModelError", "TensorSpec", "Tensors", "load_model_class"]
