"""A scripted OpenAI-compatible HTTP server, so tests exercise ChatOpenAI's real wire path.

It speaks the way the real servers do, quirks included, because a stub that is kinder than
production hides production's bugs:

* chat replies stream as word-sized ``content`` deltas;
* tool calls, when streamed, come the llama.cpp way: the function ``name`` is repeated in
  every delta (LangChain concatenates it), the ``arguments`` JSON is split across several
  deltas, and the call carries no ``id`` (``tool_id=False``); OpenAI's own style (name and id
  in the first delta only) is ``tool_style="openai"``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

ToolStyle = Literal["llama", "openai"]


class OpenAIStub:
    """Answers /v1/chat/completions from a script (plain and SSE streaming), recording bodies.

    ``replies`` script the chat (non-tool) calls in order. ``tool_replies`` script the
    arguments of tool calls per function name, in order; a tool call with nothing scripted is
    answered with a valid "nothing found" call (every required list empty).
    """

    def __init__(
        self,
        replies: list[str],
        *,
        tool_replies: dict[str, list[dict[str, Any]]] | None = None,
        tool_style: ToolStyle = "llama",
        tool_id: bool = False,
        argument_chunks: int = 4,
    ) -> None:
        self.replies = list(replies)
        self.tool_replies = {k: list(v) for k, v in (tool_replies or {}).items()}
        self.tool_style = tool_style
        self.tool_id = tool_id
        self.argument_chunks = argument_chunks
        self.requests: list[dict[str, Any]] = []
        self.tool_requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    @property
    def streamed_tool_requests(self) -> int:
        """How many tool calls the client asked to have streamed."""
        return sum(1 for r in self.tool_requests if r.get("stream"))

    def _next(self) -> str:
        with self._lock:
            if not self.replies:
                raise AssertionError("the stub ran out of scripted replies")
            return self.replies.pop(0)

    def _tool_args(self, function: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            scripted = self.tool_replies.get(function["name"])
            if scripted:
                return scripted.pop(0)
        params = function.get("parameters", {})
        props = params.get("properties", {})
        return {
            n: [] for n in params.get("required", []) if props.get(n, {}).get("type") == "array"
        }

    def tool_deltas(self, name: str, arguments: str) -> list[dict[str, Any]]:
        """The ``tool_calls`` deltas of one streamed call, in this stub's server style."""
        n = max(1, self.argument_chunks)
        size = max(1, -(-len(arguments) // n))
        pieces = [arguments[i : i + size] for i in range(0, len(arguments), size)] or [""]
        deltas: list[dict[str, Any]] = []
        for i, piece in enumerate(pieces):
            delta: dict[str, Any] = {"index": 0, "function": {"arguments": piece}}
            if self.tool_style == "llama" or i == 0:
                delta["type"] = "function"
                delta["function"]["name"] = name
                if self.tool_id:
                    delta["id"] = "call_1"
            deltas.append(delta)
        return deltas

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _sse(self, chunks: list[dict[str, Any]]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for chunk in chunks:
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if not self.path.endswith("/chat/completions"):
                    self.send_error(404)
                    return
                if body.get("tools"):
                    with stub._lock:
                        stub.tool_requests.append(body)
                    self._tool_call(body)
                    return
                with stub._lock:
                    stub.requests.append(body)
                    stub.headers.append({k.lower(): v for k, v in self.headers.items()})
                text = stub._next()
                base = {"id": f"chatcmpl-{len(stub.requests)}", "created": int(time.time()),
                        "model": body.get("model", "stub")}  # fmt: skip
                if body.get("stream"):
                    words = text.split(" ")
                    chunks = [
                        {**base, "object": "chat.completion.chunk", "choices": [
                            {"index": 0, "finish_reason": None,
                             "delta": {"role": "assistant",
                                       "content": word if i == 0 else " " + word}}]}
                        for i, word in enumerate(words)
                    ]  # fmt: skip
                    chunks.append({**base, "object": "chat.completion.chunk",
                                   "choices": [{"index": 0, "delta": {},
                                                "finish_reason": "stop"}]})  # fmt: skip
                    self._sse(chunks)
                    return
                message = {"role": "assistant", "content": text}
                self._json({
                    **base, "object": "chat.completion",
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                })  # fmt: skip

            def _tool_call(self, body: dict[str, Any]) -> None:
                function = body["tools"][0]["function"]
                arguments = json.dumps(stub._tool_args(function))
                base = {"id": "chatcmpl-tool", "created": 0, "model": body.get("model", "stub")}
                if body.get("stream"):
                    chunks = [
                        {**base, "object": "chat.completion.chunk", "choices": [
                            {"index": 0, "finish_reason": None,
                             "delta": {"role": "assistant", "content": None,
                                       "tool_calls": [delta]}}]}
                        for delta in stub.tool_deltas(function["name"], arguments)
                    ]  # fmt: skip
                    chunks.append({**base, "object": "chat.completion.chunk",
                                   "choices": [{"index": 0, "delta": {},
                                                "finish_reason": "tool_calls"}]})  # fmt: skip
                    self._sse(chunks)
                    return
                call: dict[str, Any] = {
                    "type": "function",
                    "function": {"name": function["name"], "arguments": arguments},
                }
                if stub.tool_id:
                    call["id"] = "call_1"
                message = {"role": "assistant", "content": None, "tool_calls": [call]}
                self._json({
                    **base, "object": "chat.completion",
                    "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
                })  # fmt: skip

        return Handler


@contextmanager
def openai_stub(replies: list[str], **options: Any) -> Iterator[OpenAIStub]:
    stub = OpenAIStub(replies, **options)
    thread = threading.Thread(target=stub.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        stub.server.shutdown()
        stub.server.server_close()
