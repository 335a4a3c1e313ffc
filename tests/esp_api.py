"""A real HTTP server standing in for an ESP's sending API (Brevo's), which anymail's backend
reaches through ANYMAIL_BREVO_API_URL."""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class BrevoApi:
    """Answers POST /v3/smtp/email as Brevo does (201 and a messageId), or as ``mode`` says:
    "refuse" (400, Brevo's error body; also for any address in ``refused``), "busy" (429),
    "die" (reads the request, then drops the connection without an answer)."""

    mode: str = "accept"
    refused: set[str] = field(default_factory=set)
    requests: list[dict[str, Any]] = field(default_factory=list)

    def start(self) -> None:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                request = {"path": self.path, "key": self.headers.get("api-key")}
                api.requests.append({**request, **json.loads(body)})
                mode = api.mode
                if {to["email"] for to in api.requests[-1]["to"]} & api.refused:
                    mode = "refuse"
                if mode == "die":
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                status, answer = {
                    "accept": (201, {"messageId": f"<{len(api.requests)}@smtp-relay.mailin.fr>"}),
                    "refuse": (400, {"code": "invalid_parameter", "message": "email is not valid"}),
                    "busy": (429, {"code": "too_many_requests", "message": "Slow down"}),
                }[mode]
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
