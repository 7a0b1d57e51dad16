"""OpenAI-compatible speech adapter: ``POST /v1/audio/speech`` -> one row of a TTS deployment.

The body is OpenAI's (``model``, ``input``, ``voice``, ``response_format``, ``speed``); the
answer is the audio itself, as ``wav`` (16-bit mono PCM in a RIFF header, what the ``wave``
module reads) or ``pcm`` (the same samples raw, little-endian, at the voice's rate — 22,050 Hz
for the built-in voice, not OpenAI's 24 kHz; the ``x-sample-rate`` header says which). mp3,
opus, aac and flac need an encoder the standard library lacks, and are refused with a 400
naming the formats served.

A deployment speaks when it takes one BYTES input and returns FP32 ``audio`` with INT64
``samples`` and ``sample_rate``; its model may list ``voices`` and a ``max_chars`` limit,
checked here before the request is queued.
"""

from __future__ import annotations

import io
import math
import wave
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from tailguard.serve.errors import BadRequest
from tailguard.serve.loader import ModelSignature
from tailguard.tensors import Tensors

FORMATS = ("wav", "pcm")
_UNSUPPORTED = ("mp3", "opus", "aac", "flac")
MEDIA_TYPES = {"wav": b"audio/wav", "pcm": b"audio/pcm"}
SPEED_RANGE = (0.25, 4.0)
# The batching key of speech rows: they carry a `speed` tensor V2 requests lack, so the two
# never share a batch (a batch's tensors are concatenated name by name).
SPEECH_KEY = ((), "speed")


@dataclass(frozen=True, slots=True)
class Voices:
    """What a speech deployment accepts, read from its model in the gateway (no setup)."""

    names: tuple[str, ...] | None  # None: the model names none, any is accepted
    max_chars: int


@dataclass(frozen=True, slots=True)
class SpeechRequest:
    model: str
    text: str
    voice: str
    response_format: str
    speed: float


def speech_capable(signature: ModelSignature) -> bool:
    outs = {s.name: s.datatype for s in signature.outputs}
    return (len(signature.inputs) == 1 and signature.inputs[0].datatype == "BYTES"
            and outs.get("audio") == "FP32" and outs.get("samples") == "INT64"
            and outs.get("sample_rate") == "INT64")


def voices_of(model: object) -> Voices:
    names = getattr(model, "voices", None)
    limit = getattr(model, "max_chars", None)
    return Voices(tuple(names) if names else None,
                  int(limit) if isinstance(limit, int) and limit > 0 else 4096)


def _field(doc: dict[str, Any], name: str, kind: type, default: Any = None) -> Any:
    value = doc.get(name, default)
    if value is None or (kind is float and isinstance(value, int | float)
                         and not isinstance(value, bool)):
        return value
    if not isinstance(value, kind):
        raise BadRequest(f"'{name}' must be a {kind.__name__}")
    return value


def decode_speech(body: bytes) -> SpeechRequest:
    """Parse the body (deployment-independent checks; :func:`check_speech` does the rest)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"malformed JSON body: {exc}") from None
    if not isinstance(doc, dict):
        raise BadRequest("the body must be a JSON object")
    model = _field(doc, "model", str)
    if not model:
        raise BadRequest("'model' is required (a deployment name)")
    text = _field(doc, "input", str)
    if text is None:
        raise BadRequest("'input' is required: the text to speak")
    if not text.strip():
        raise BadRequest("'input' is empty: send the text to speak")
    voice = _field(doc, "voice", str)
    if not voice:
        raise BadRequest("'voice' is required (for example 'joe' or 'alloy')")
    fmt = _field(doc, "response_format", str, "wav") or "wav"
    if fmt in _UNSUPPORTED:
        raise BadRequest(f"response_format {fmt!r} is not served (it needs an encoder this "
                         f"server does not ship); use one of {list(FORMATS)}")
    if fmt not in FORMATS:
        raise BadRequest(f"unknown response_format {fmt!r}; use one of {list(FORMATS)}")
    speed = _field(doc, "speed", float, 1.0)
    speed = 1.0 if speed is None else float(speed)
    low, high = SPEED_RANGE
    if not (math.isfinite(speed) and low <= speed <= high):
        raise BadRequest(f"'speed' must be between {low} and {high}, got {speed}")
    return SpeechRequest(model, text, voice, fmt, speed)


def check_speech(request: SpeechRequest, voices: Voices) -> None:
    """The deployment's own limits: its voices and its longest text."""
    if voices.names is not None and request.voice not in voices.names:
        raise BadRequest(f"unknown voice {request.voice!r} for model {request.model!r}; "
                         f"voices: {list(voices.names)}")
    if len(request.text) > voices.max_chars:
        raise BadRequest(f"'input' has {len(request.text)} characters; model "
                         f"{request.model!r} takes at most {voices.max_chars}")


def to_tensors(request: SpeechRequest, signature: ModelSignature) -> Tensors:
    text = np.empty(1, dtype=object)
    text[0] = request.text.encode("utf-8")
    return {signature.inputs[0].name: text,
            "speed": np.array([request.speed], dtype=np.float32)}


@dataclass(frozen=True, slots=True)
class Speech:
    """One row of a speech deployment's outputs, as 16-bit samples."""

    pcm: bytes
    sample_rate: int

    @property
    def seconds(self) -> float:
        return len(self.pcm) / 2 / self.sample_rate if self.sample_rate else 0.0


def speech_of(outputs: Tensors, row: int = 0) -> Speech:
    samples = int(outputs["samples"][row])
    audio = np.asarray(outputs["audio"][row, :samples], dtype=np.float32)
    pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    return Speech(pcm, int(outputs["sample_rate"][row]))


def encode_audio(speech: Speech, fmt: str) -> bytes:
    if fmt == "pcm":
        return speech.pcm
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(speech.sample_rate)
        out.writeframes(speech.pcm)
    return buffer.getvalue()
