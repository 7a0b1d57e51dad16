"""Helpers the tests and benchmarks share that are no part of the package."""

from pathlib import Path

# Run as a script (``python ECHO_SERVER``): it needs only the standard library and uvicorn.
ECHO_SERVER = Path(__file__).with_name("echo_server.py")
