"""Test doubles that speak real protocols on 127.0.0.1 (no patching needed).

- :mod:`tests.fakes.openai_server`: :class:`FakeOpenAI`, an OpenAI-compatible chat completions
  server (non-streaming and SSE streaming, programmable errors and delays); also a script.
- :mod:`tests.fakes.contract`: :class:`HostContract`, runs a processor's ``run.py`` as a host
  subprocess under the processor contract (a stand-in for a container adapter).
"""
