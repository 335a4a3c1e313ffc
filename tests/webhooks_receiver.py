"""A real HTTP receiver for outbound webhooks (http.server in a thread, on a port of its own),
which checks each message's signature as it arrives with the Standard Webhooks library."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    verified: bool
    error: str = ""

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.body)

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


class Receiver:
    """Answers every POST with ``status`` (settable) after recording it; ``on_request`` (if set)
    is called first, with the request, in the server's thread."""

    def __init__(self, port: int = 0, *, status: int = 200, secret: str = "") -> None:
        self.status = status
        self.secret = secret
        self.received: list[Received] = []
        self.on_request: Any = None
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/leadfunnel"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def ids(self) -> list[str]:
        return [request.webhook_id for request in self.received]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go as two writes

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {key.lower(): value for key, value in self.headers.items()}
                verified, error = True, ""
                try:
                    Webhook(receiver.secret).verify(body, headers)
                except (WebhookVerificationError, ValueError) as failure:
                    verified, error = False, str(failure)
                received = Received(headers, body, verified, error)
                if receiver.on_request is not None:
                    receiver.on_request(received)
                receiver.received.append(received)
                answer = b'{"received":true}' if receiver.status < 300 else b"upstream exploded"
                self.send_response(receiver.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        return Handler
