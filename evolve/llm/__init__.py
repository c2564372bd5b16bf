"""The OpenAI-compatible chat client (vLLM, Ollama) shared by gold and answer: retries, JSON repair, forced
choices, streaming (server-sent events) with a cancel that closes the connection, and token counting with the
served model's own tokenizer (vLLM's ``/tokenize``).

Imports httpx only; json-repair on first use.
"""

from evolve.llm._client import Answer, ChatClient, LLMStats
from evolve.llm._json import parse_json_object
from evolve.llm._stream import AsyncChatStream, ChatStream, LLMError, SSEReader, StreamResult

__all__ = [
    "Answer",
    "AsyncChatStream",
    "ChatClient",
    "ChatStream",
    "LLMError",
    "LLMStats",
    "SSEReader",
    "StreamResult",
    "parse_json_object",
]
