"""A scripted OpenAI-compatible HTTP server, so tests exercise ChatOpenAI's real wire path."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class OpenAIStub:
    """Answers /v1/chat/completions from a script (plain and SSE streaming), recording bodies."""

    def __init__(self, replies: list[str]) -> None:
        self.replies = list(replies)
        self.requests: list[dict[str, Any]] = []
        # Structured-output calls (memory extraction) are answered apart from the chat script
        # with a valid "nothing found" tool call, so chat tests don't depend on the pipeline.
        self.tool_requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def _next(self) -> str:
        with self._lock:
            if not self.replies:
                raise AssertionError("the stub ran out of scripted replies")
            return self.replies.pop(0)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

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
                created = int(time.time())
                base = {"id": f"chatcmpl-{len(stub.requests)}", "created": created,
                        "model": body.get("model", "stub")}  # fmt: skip
                if body.get("stream"):
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    words = text.split(" ")
                    for i, word in enumerate(words):
                        piece = word if i == 0 else " " + word
                        chunk = {**base, "object": "chat.completion.chunk", "choices": [
                            {"index": 0, "delta": {"role": "assistant", "content": piece},
                             "finish_reason": None}]}  # fmt: skip
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    end = {
                        **base,
                        "object": "chat.completion.chunk",
                        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                    }
                    self.wfile.write(f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n".encode())
                    return
                message = {"role": "assistant", "content": text}
                payload = {
                    **base,
                    "object": "chat.completion",
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _tool_call(self, body: dict[str, Any]) -> None:
                function = body["tools"][0]["function"]
                params = function.get("parameters", {})
                props = params.get("properties", {})
                args = {n: [] for n in params.get("required", [])
                        if props.get(n, {}).get("type") == "array"}  # fmt: skip
                call = {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": function["name"], "arguments": json.dumps(args)},
                }
                message = {"role": "assistant", "content": None, "tool_calls": [call]}
                payload = {"id": "chatcmpl-tool", "object": "chat.completion", "created": 0,
                           "model": body.get("model", "stub"),
                           "choices": [{"index": 0, "message": message,
                                        "finish_reason": "tool_calls"}]}  # fmt: skip
                if body.get("stream"):
                    delta = {"role": "assistant", "content": None,
                             "tool_calls": [{"index": 0, **call}]}  # fmt: skip
                    chunk = {
                        **payload,
                        "object": "chat.completion.chunk",
                        "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
                    }
                    end = {
                        **payload,
                        "object": "chat.completion.chunk",
                        "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}],
                    }
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    for part in (chunk, end):
                        self.wfile.write(f"data: {json.dumps(part)}\n\n".encode())
                    self.wfile.write(b"data: [DONE]\n\n")
                    return
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


@contextmanager
def openai_stub(replies: list[str]) -> Iterator[OpenAIStub]:
    stub = OpenAIStub(replies)
    thread = threading.Thread(target=stub.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        stub.server.shutdown()
        stub.server.server_close()
