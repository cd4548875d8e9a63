"""Test doubles that speak real protocols on 127.0.0.1 (no patching needed).

- :mod:`tests.fakes.openai_server`: :class:`FakeOpenAI`, an OpenAI-compatible chat completions
  server (non-streaming and SSE streaming, programmable errors and delays).
"""
