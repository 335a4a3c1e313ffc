"""A tiny authoritative DNS server for tests: UDP on 127.0.0.1, a free port, in a thread, built
with dnspython's message API. It answers the records it is given, NXDOMAIN for other names,
and an empty answer for another type of a known name."""

from __future__ import annotations

import socket
import threading

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset


def txt(value: str) -> str:
    """A TXT record's text form, cut into the 255-byte strings DNS allows (a DKIM key is longer)."""
    parts = [value[start : start + 255] for start in range(0, len(value), 255)] or [""]
    return " ".join('"' + part.replace("\\", "\\\\").replace('"', '\\"') + '"' for part in parts)


class DnsServer:
    def __init__(self, records: dict[tuple[str, str], list[str]]) -> None:
        """``records``: (name, type) -> record texts, e.g. ("example.fr", "TXT"): [txt("v=spf1 -all")]."""
        self.records = {
            (name.lower().rstrip(".") + ".", kind): texts for (name, kind), texts in records.items()
        }
        self.names = {name for name, _kind in self.records}
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.settimeout(0.1)  # to see stop() soon
        self.port = self.socket.getsockname()[1]
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                data, client = self.socket.recvfrom(4096)
            except TimeoutError:
                continue
            query = dns.message.from_wire(data)
            response = dns.message.make_response(query)
            response.flags |= dns.flags.AA
            question = query.question[0]
            name = question.name.to_text().lower()
            kind = dns.rdatatype.to_text(question.rdtype)
            texts = self.records.get((name, kind))
            if texts:
                response.answer.append(
                    dns.rrset.from_text_list(question.name, 300, "IN", kind, texts)
                )
            elif name not in self.names:
                response.set_rcode(dns.rcode.NXDOMAIN)
            self.socket.sendto(response.to_wire(), client)

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)
        self.socket.close()
