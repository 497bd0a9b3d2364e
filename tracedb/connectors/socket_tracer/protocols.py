"""Protocol traces: how a recognised protocol turns a connection's bytes into
rows of its table.

A `Trace` lives as long as one connection. The connector feeds it the
connection's bytes in time order, each piece marked as being on the request
side (what a client sends, what a server receives) or the response side, and
collects the finished rows. Adding a protocol: its parser module in
tracedb.protocols, its schema file, a Trace class here and one line in TRACES
(plus its inference rule in bpf/socket_tracer/).
"""

from __future__ import annotations

from typing import ClassVar, Protocol as TypingProtocol

from tracedb.connectors.socket_tracer.events import Protocol
from tracedb.protocols import http


class Trace(TypingProtocol):
    table: ClassVar[str]
    parse_errors: int

    def on_bytes(self, request_side: bool, data: bytes, time_ns: int) -> None: ...
    def on_gap(self, request_side: bool, lost_bytes: int, time_ns: int) -> None: ...
    def on_close(self, time_ns: int) -> None: ...
    def take_rows(self) -> list[dict]:
        """Finished rows: protocol columns plus `time_ns` (CLOCK_BOOTTIME of the request's first byte)."""
        ...


def _body_text(body: bytes) -> str:
    return body.decode("utf-8", "replace")


class HttpTrace:
    table = "http_events"

    def __init__(self, body_limit: int):
        self.requests = http.HttpParser(is_request=True, body_limit=body_limit)
        self.responses = http.HttpParser(is_request=False, body_limit=body_limit)
        self.stitcher = http.HttpStitcher()
        self._rows: list[dict] = []

    @property
    def parse_errors(self) -> int:
        return self.requests.parse_errors + self.responses.parse_errors + self.stitcher.unmatched_responses

    def on_bytes(self, request_side: bool, data: bytes, time_ns: int) -> None:
        parser = self.requests if request_side else self.responses
        self._add(request_side, parser.feed(data, time_ns))

    def on_gap(self, request_side: bool, lost_bytes: int, time_ns: int) -> None:
        parser = self.requests if request_side else self.responses
        self._add(request_side, parser.gap(lost_bytes, time_ns))

    def _add(self, request_side: bool, messages: list[http.HttpMessage]) -> None:
        if not request_side:
            self._add_responses(messages)
            return
        for request in messages:
            self.responses.expect_response_to(request.method)
        self.stitcher.add_requests(messages)

    def on_close(self, time_ns: int) -> None:
        self._add_responses(self.responses.close(time_ns))

    def _add_responses(self, responses: list[http.HttpMessage]) -> None:
        if self.responses.switched:
            self.requests.switch_protocols()
        for req, resp in self.stitcher.add_responses(responses):
            self._rows.append(
                {
                    "time_ns": req.start_ns,
                    "major_version": req.major,
                    "minor_version": req.minor,
                    "req_headers": http.headers_json(req.headers),
                    "req_method": req.method,
                    "req_path": req.path,
                    "req_body": _body_text(req.body),
                    "req_body_size": req.body_size,
                    "resp_headers": http.headers_json(resp.headers),
                    "resp_status": resp.status,
                    "resp_message": resp.reason,
                    "resp_body": _body_text(resp.body),
                    "resp_body_size": resp.body_size,
                    "latency": http.latency_ns(req, resp),
                }
            )

    def take_rows(self) -> list[dict]:
        rows, self._rows = self._rows, []
        return rows


# Protocol (as inferred in the kernel) -> the trace that parses it.
TRACES: dict[Protocol, type] = {
    Protocol.HTTP: HttpTrace,
}
