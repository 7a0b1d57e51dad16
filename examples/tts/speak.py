"""Speak a text with a running tailguard TTS deployment and write it to a WAV file, with the
``openai`` client (streamed to the file as it arrives).

    tailguard serve --config examples/tts/serve.yaml &
    python examples/tts/speak.py --url http://127.0.0.1:8020 "Hello from tailguard." hello.wav
"""

from __future__ import annotations

import argparse
import wave
from pathlib import Path

from openai import OpenAI


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("text")
    parser.add_argument("out", type=Path)
    parser.add_argument("--url", default="http://127.0.0.1:8020")
    parser.add_argument("--voice", default="joe")
    parser.add_argument("--speed", type=float, default=1.0)
    args = parser.parse_args()
    client = OpenAI(base_url=args.url + "/v1", api_key="unused")
    with client.audio.speech.with_streaming_response.create(
            model="tts", voice=args.voice, input=args.text, response_format="wav",
            speed=args.speed) as response:
        response.stream_to_file(args.out)
    with wave.open(str(args.out), "rb") as wav:
        seconds = wav.getnframes() / wav.getframerate()
        print(f"{args.out}: {seconds:.2f} s of audio at {wav.getframerate()} Hz")


if __name__ == "__main__":
    main()
