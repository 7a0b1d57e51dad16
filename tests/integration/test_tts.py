"""Text to speech end to end: a real server with the Piper voice, the openai client and
tritonclient. Needs the `tts` extra (installed by `make test`); skipped only outside CI."""

from __future__ import annotations

import io
import os
import signal
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tailguard.models.tts import tts_available
from tests.integration.conftest import ServerProcess

if not tts_available():
    if os.environ.get("CI") == "true":
        raise RuntimeError("the tts extra must be installed in CI: pip install -e '.[tts]'")
    pytest.skip("the tts extra is not installed", allow_module_level=True)

TTS_CONFIG = {
    "deployments": [
        {"name": "tts", "model": "tailguard.models.tts:PiperTTS", "max_batch_size": 1,
         "max_wait_ms": 0, "options": {"threads": 1, "max_chars": 500}},
        {"name": "echo", "model": "tailguard.models.echo:Echo", "max_wait_ms": 0},
    ],
}
SENTENCE = "The quick brown fox jumps over the lazy dog near the river bank."


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(TTS_CONFIG, tmp_path_factory.mktemp("tts"))
    try:
        yield proc.wait_ready()
    finally:
        for client in _CLIENTS:
            client.close()  # type: ignore[attr-defined]
        proc.stop(signal.SIGKILL)


_CLIENTS: list[object] = []


def _client(server: ServerProcess):  # type: ignore[no-untyped-def]
    from openai import OpenAI

    client = OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    _CLIENTS.append(client)  # closed with the module's server, not left to the collector
    return client


def _read_wav(data: bytes) -> tuple[int, np.ndarray]:
    with wave.open(io.BytesIO(data), "rb") as wav:
        assert wav.getnchannels() == 1 and wav.getsampwidth() == 2
        rate = wav.getframerate()
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    return rate, samples


def test_openai_speech_wav_is_plausible_speech(server: ServerProcess) -> None:
    resp = _client(server).audio.speech.create(model="tts", voice="alloy", input=SENTENCE,
                                               response_format="wav")
    rate, samples = _read_wav(resp.content)
    assert rate == 22_050
    seconds = samples.size / rate
    # 13 words at a speaking rate of 2-5 words per second.
    assert 2.0 < seconds < 7.0, seconds
    rms = float(np.sqrt(np.mean((samples.astype(np.float64) / 32768) ** 2)))
    assert rms > 0.02, f"near-silent audio (rms {rms})"
    assert np.abs(samples).max() > 8000


def test_speed_and_pcm_and_streaming(server: ServerProcess) -> None:
    client = _client(server)
    normal = client.audio.speech.create(model="tts", voice="joe", input=SENTENCE,
                                        response_format="pcm")
    fast = client.audio.speech.create(model="tts", voice="joe", input=SENTENCE,
                                      response_format="pcm", speed=2.0)
    assert len(normal.content) % 2 == 0
    ratio = len(fast.content) / len(normal.content)
    assert 0.35 < ratio < 0.7, ratio  # twice the rate, about half the samples
    with client.audio.speech.with_streaming_response.create(
            model="tts", voice="joe", input="Streaming works.", response_format="wav") as r:
        assert r.headers["content-type"] == "audio/wav"
        body = b"".join(r.iter_bytes(chunk_size=4096))
    rate, samples = _read_wav(body)
    assert rate == 22_050 and samples.size > rate // 4


@pytest.mark.parametrize(("body", "says"), [
    ({"model": "tts", "voice": "joe", "input": "   "}, "'input' is empty"),
    ({"model": "tts", "voice": "joe", "input": "word " * 101}, "at most 500"),
    ({"model": "tts", "voice": "bob", "input": "hi"}, "unknown voice 'bob'"),
    ({"model": "tts", "voice": "joe", "input": "hi", "response_format": "mp3"}, "not served"),
    ({"model": "tts", "voice": "joe", "input": "hi", "speed": 9}, "'speed' must be"),
    ({"model": "echo", "voice": "joe", "input": "hi"}, "does not speak"),
])
def test_bad_speech_requests_are_400_saying_why(server: ServerProcess, body: dict[str, object],
                                                says: str) -> None:
    resp = server.post("/v1/audio/speech", json=body)
    assert resp.status_code == 400, resp.text
    assert says in resp.json()["error"]["message"]


def test_v2_tts_through_tritonclient(server: ServerProcess) -> None:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    try:
        text = httpclient.InferInput("text", [2], "BYTES")
        text.set_data_from_numpy(np.array([SENTENCE.encode(), b"Hello."], dtype=object),
                                 binary_data=False)
        outs = [httpclient.InferRequestedOutput(n, binary_data=False)
                for n in ("audio", "samples", "sample_rate")]
        result = client.infer("tts", [text], outputs=outs)
    finally:
        client.close()
    audio, samples = result.as_numpy("audio"), result.as_numpy("samples")
    assert audio.dtype == np.float32 and audio.shape == (2, int(samples.max()))
    assert list(result.as_numpy("sample_rate")) == [22_050, 22_050]
    assert samples[0] > samples[1] > 22_050 // 4
    assert float(np.abs(audio[0, : samples[0]]).max()) > 0.25


def test_usage_counts_characters_and_audio_seconds(server: ServerProcess) -> None:
    before = _speech_usage(server)
    _client(server).audio.speech.create(model="tts", voice="joe", input="Count me.")
    after = _speech_usage(server)
    assert after["characters"] - before["characters"] == len("Count me.")
    assert 0.3 < after["audio_seconds"] - before["audio_seconds"] < 3.0
    metrics = server.get("/metrics").text
    assert "tailguard_tenant_audio_seconds_total" in metrics
    assert "tailguard_tenant_speech_characters_total" in metrics


def _speech_usage(server: ServerProcess) -> dict[str, float]:
    rows = [r for r in server.get("/v1/usage").json()["usage"] if r["deployment"] == "tts"]
    return {"characters": sum(r["characters"] for r in rows),
            "audio_seconds": sum(r["audio_seconds"] for r in rows)}


def test_voice_file_mismatch_is_refused(tmp_path: Path) -> None:
    from tailguard.models.base import ModelError
    from tailguard.models.tts import PiperTTS, voice_path

    with pytest.raises(ModelError, match="expected the pinned"):
        PiperTTS(voice_path=str(voice_path()), voice_sha256="0" * 64).setup()


@pytest.mark.slow
def test_tts_scales_up_under_load_with_no_failed_requests(start_server) -> None:  # type: ignore[no-untyped-def]
    import threading

    from tests.integration.conftest import wait_for

    # A loose objective: admission sheds nothing, the saturated replica (utilisation) and
    # the queue drive the scale-up.
    config = {"deployments": [{
        "name": "tts", "model": "tailguard.models.tts:PiperTTS", "max_batch_size": 1,
        "max_wait_ms": 0, "p99_ms": 10_000, "timeout_ms": 60_000, "options": {"threads": 1},
        "autoscaling": {"policy": "slo", "min_replicas": 1, "max_replicas": 2, "tick_s": 0.5,
                        "window_s": 5.0, "options": {"scale_down_stabilization_s": 600}}}]}
    server = start_server(config).wait_ready()
    statuses: list[int] = []
    stop = threading.Event()

    def client() -> None:
        # The openai client retries a shed request (429) after its retry-after-ms, as a
        # real client does; a request fails only if it still fails after that.
        from openai import OpenAI, OpenAIError

        with OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=8,
                    timeout=60) as openai_client:
            while not stop.is_set():
                try:
                    openai_client.audio.speech.create(model="tts", voice="joe", input=SENTENCE)
                    statuses.append(200)
                except OpenAIError as exc:
                    statuses.append(getattr(exc, "status_code", -1))

    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: server.deployment("tts")["replica_counts"]["ready"] >= 2, 120,
                 "a second tts replica under load")
    finally:
        stop.set()
        for t in threads:
            t.join(70)
    assert statuses and set(statuses) == {200}, statuses
    status = server.deployment("tts")
    assert status["cold_start_s"] is not None and status["cold_start_s"] > 0
    metrics = status["autoscaling"]["metrics"]
    # The window also holds the idle time after the clients stopped: present, not a level.
    assert metrics["busy_ratio"] > 0 and metrics["cold_start_s"] > 0
    assert metrics["gpu_utilization"] is None  # no GPU here: the signal is missing
    families = {f.name: f for f in text_string_to_metric_families(server.get("/metrics").text)}
    busy = {s.labels["deployment"]: s.value
            for s in families["tailguard_replica_busy_fraction"].samples}
    assert busy["tts"] > 0
