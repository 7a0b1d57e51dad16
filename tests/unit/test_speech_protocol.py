"""The speech adapter without a model: request checks, voices and limits, WAV/PCM encoding."""

from __future__ import annotations

import io
import wave

import numpy as np
import orjson
import pytest

from tailguard.serve.errors import BadRequest
from tailguard.serve.protocols import speech


def _body(**fields: object) -> bytes:
    return orjson.dumps({"model": "tts", "voice": "joe", "input": "Hi there.", **fields})


def test_defaults_and_fields() -> None:
    req = speech.decode_speech(_body())
    assert (req.response_format, req.speed) == ("wav", 1.0)
    req = speech.decode_speech(_body(response_format="pcm", speed=2))
    assert (req.response_format, req.speed) == ("pcm", 2.0)


@pytest.mark.parametrize(("fields", "says"), [
    ({"input": ""}, "'input' is empty"),
    ({"input": None}, "'input' is required"),
    ({"input": 3}, "'input' must be a str"),
    ({"voice": ""}, "'voice' is required"),
    ({"response_format": "flac"}, "not served"),
    ({"response_format": "ogg"}, "unknown response_format"),
    ({"speed": 0.1}, "'speed' must be between"),
    ({"speed": "fast"}, "'speed' must be a float"),
    ({"model": ""}, "'model' is required"),
])
def test_bad_requests_say_what_is_wrong(fields: dict[str, object], says: str) -> None:
    with pytest.raises(BadRequest, match=says):
        speech.decode_speech(_body(**fields))


def test_voices_and_length_limit_are_the_deployments() -> None:
    voices = speech.Voices(("joe", "alloy"), max_chars=10)
    speech.check_speech(speech.decode_speech(_body(voice="alloy")), voices)
    with pytest.raises(BadRequest, match="unknown voice 'bob'.*'joe', 'alloy'"):
        speech.check_speech(speech.decode_speech(_body(voice="bob")), voices)
    with pytest.raises(BadRequest, match="at most 10"):
        speech.check_speech(speech.decode_speech(_body(input="x" * 11)), voices)
    speech.check_speech(speech.decode_speech(_body(voice="anything")),
                        speech.Voices(None, 4096))  # a model naming no voices takes any


def test_one_row_becomes_wav_and_pcm() -> None:
    audio = np.zeros((2, 8), dtype=np.float32)
    audio[0, :6] = [0.0, 0.5, 1.0, -1.0, 2.0, -0.25]  # row 0 has 6 real samples
    outputs = {"audio": audio, "samples": np.array([6, 8]),
               "sample_rate": np.array([22_050, 22_050])}
    row = speech.speech_of(outputs, 0)
    pcm = np.frombuffer(row.pcm, dtype="<i2")
    assert list(pcm) == [0, 16383, 32767, -32767, 32767, -8191]  # clipped, not wrapped
    assert row.seconds == pytest.approx(6 / 22_050)
    assert speech.encode_audio(row, "pcm") == row.pcm
    with wave.open(io.BytesIO(speech.encode_audio(row, "wav")), "rb") as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (22_050, 1, 2)
        assert wav.readframes(6) == row.pcm
