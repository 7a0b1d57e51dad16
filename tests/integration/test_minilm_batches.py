"""MiniLM's length-sorted forward passes change no embedding: a text embeds the same alone,
in a batch padded to its longest text, and in passes split by length."""

from __future__ import annotations

import numpy as np

from tailguard.models.minilm import MiniLM

TEXTS = ["A cat.", "The engineer reviewed the latency report before lunch.",
         "Every request that arrived late was measured carefully by the research team "
         "during the long evening at the station, before the train left the city.",
         "Dogs bark.", "Our new service crossed a long bridge over the river."]


def test_an_embedding_does_not_depend_on_its_batch() -> None:
    import torch

    model = MiniLM(threads=1)
    model.setup()
    split, tokens = model.embed(TEXTS)
    alone = np.stack([model.embed([t])[0][0] for t in TEXTS])
    ids = [model._tokenizer.encode(t).ids for t in TEXTS]
    longest = max(map(len, ids))
    padded = torch.tensor([i + [0] * (longest - len(i)) for i in ids])
    mask = torch.tensor([[1] * len(i) + [0] * (longest - len(i)) for i in ids])
    one_pass = model._forward(padded, mask)
    assert list(tokens) == [len(i) for i in ids]
    np.testing.assert_allclose(split, alone, atol=1e-5)
    np.testing.assert_allclose(split, one_pass, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(split, axis=1), 1.0, atol=1e-5)
