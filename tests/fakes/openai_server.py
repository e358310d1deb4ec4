"""A fake OpenAI-compatible model server on a loopback port (standard library only).

It speaks the real HTTP API: `GET /health`, `GET /v1/models`, `POST /v1/chat/completions`
(JSON, or SSE ending in `[DONE]` when `stream` is true). Replies come from a script (a queue
of strings) or a `responder(request_json) -> str` callable; every request is captured.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Responder = Callable[[dict[str, Any]], str]


class FakeOpenAIServer:
    """Start with `with FakeOpenAIServer() as srv:`; `srv.base_url` ends in `/v1`."""

    def __init__(
        self,
        *,
        model_ids: tuple[str, ...] = ("fake-vl",),
        replies: list[str] | None = None,
        responder: Responder | None = None,
        latency_s: float = 0.0,
        owned_by: str = "fake",
        max_model_len: int | None = None,
    ) -> None:
        self.max_model_len = max_model_len
        self.model_ids = model_ids
        self.owned_by = owned_by
        self.replies: deque[str] = deque(replies or [])
        self.responder = responder
        self.latency_s = latency_s
        self.requests: list[dict[str, Any]] = []
        self.fail_next: list[tuple[int, str]] = []
        """(status, message) answers for the next requests; status 0 sends a non-JSON body."""
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _reply_for(self, body: dict[str, Any]) -> str:
        if self.replies:
            return self.replies.popleft()
        if self.responder is not None:
            return self.responder(body)
        return "</silence>"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, code: int, obj: Any) -> None:
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/health":
                    self._json(200, {"status": "ok"})
                elif self.path == "/v1/models":
                    data = [{"id": m, "object": "model", "owned_by": fake.owned_by}
                            for m in fake.model_ids]
                    if fake.max_model_len is not None:
                        for entry in data:
                            entry["max_model_len"] = fake.max_model_len
                    self._json(200, {"object": "list", "data": data})
                else:
                    self._json(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self) -> None:
                if self.path != "/v1/chat/completions":
                    self._json(404, {"error": {"message": f"no route {self.path}"}})
                    return
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                fake.requests.append(body)
                if fake.fail_next:
                    code, message = fake.fail_next.pop(0)
                    if code == 0:
                        data = message.encode()
                        self.send_response(200)
                        self.send_header("Content-Length", str(len(data)))
                        self.end_headers()
                        self.wfile.write(data)
                    else:
                        self._json(code, {"error": {"message": message}})
                    return
                if fake.latency_s:
                    time.sleep(fake.latency_s)
                text = fake._reply_for(body)
                model = body.get("model", fake.model_ids[0])
                if body.get("stream"):
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    for piece in (text[:5], text[5:]):
                        chunk = {"object": "chat.completion.chunk", "model": model,
                                 "choices": [{"index": 0, "delta": {"content": piece}}]}
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.write(b"data: [DONE]\n\n")
                    return
                self._json(200, {
                    "id": "chatcmpl-fake", "object": "chat.completion", "model": model,
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": text}}],
                    "usage": {"prompt_tokens": 0, "completion_tokens": 0},
                })

        return Handler
