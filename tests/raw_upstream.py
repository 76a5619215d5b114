"""A raw upstream that records exactly what arrived, for proving what Envoy forwarded.

Plain sockets and one thread per connection. Each connection speaks HTTP/1.1, or HTTP/2 when it
opens with the prior-knowledge preface (`PRI * HTTP/2.0`, for a cluster configured with
`http2_protocol_options`), decoded with the `h2` package. Every request becomes an `Arrival`,
recorded the moment its header block is complete, before any of its body is read: a request whose
headers were forwarded and which Envoy then reset is still on the record (`complete` stays
False). The answer is 200 with a JSON echo unless `respond` says otherwise.

    with RawUpstream() as up:
        mark = up.mark()
        ...                                    # requests through Envoy
        up.since(mark)                         # what arrived since
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Tuple

import h2.config
import h2.connection
import h2.events

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


@dataclass
class Arrival:
    """One request as the upstream received it."""

    proto: str                                  # "h1" or "h2"
    t_headers: float                            # time.monotonic() when the header block was complete
    request_line: bytes = b""                   # h1: exactly as received; h2: synthesised from the pseudo-headers
    header_lines: List[bytes] = field(default_factory=list)   # h1: raw lines; h2: b"name: value"
    method: str = ""
    path: str = ""
    headers: List[Tuple[str, str]] = field(default_factory=list)  # names as received (h1 keeps case)
    body: bytearray = field(default_factory=bytearray)
    trailers: List[Tuple[str, str]] = field(default_factory=list)
    t_body_end: Optional[float] = None
    complete: bool = False                      # the whole request was read
    aborted: bool = False                       # connection closed or stream reset before the end

    def header_all(self, name: str) -> list:
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def header(self, name: str) -> Optional[str]:
        vals = self.header_all(name)
        return vals[0] if vals else None

    def names(self) -> list:
        return [k.lower() for k, _ in self.headers]

    def trailer_names(self) -> list:
        return [k.lower() for k, _ in self.trailers]

    def __repr__(self) -> str:
        state = "complete" if self.complete else ("aborted" if self.aborted else "open")
        return (f"Arrival({self.proto} {self.request_line!r} headers={self.headers} "
                f"body={bytes(self.body[:200])!r} trailers={self.trailers} {state})")


@dataclass
class Reply:
    status: int = 200
    headers: List[Tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    trailers: List[Tuple[str, str]] = field(default_factory=list)


def echo_reply(a: Arrival) -> Reply:
    """200 with what arrived as JSON; leaky `server`/`x-powered-by` like a real backend."""
    doc = {"method": a.method, "path": a.path, "headers": [[k.lower(), v] for k, v in a.headers],
           "body": bytes(a.body[:4096]).decode("utf-8", "replace"), "trailers": a.trailers}
    return Reply(200, [("content-type", "application/json"), ("server", "raw-upstream"),
                       ("x-powered-by", "raw")], json.dumps(doc).encode())


class _Reader:
    """Buffered reads from a socket; every method returns None at end of stream."""

    def __init__(self, sock: socket.socket, initial: bytes = b""):
        self.sock = sock
        self.buf = bytearray(initial)

    def _fill(self) -> bool:
        try:
            data = self.sock.recv(65536)
        except OSError:
            return False
        if not data:
            return False
        self.buf += data
        return True

    def until(self, delim: bytes) -> Optional[bytes]:
        while True:
            i = self.buf.find(delim)
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[: i + len(delim)]
                return out
            if not self._fill():
                return None

    def exact(self, n: int) -> Optional[bytes]:
        while len(self.buf) < n:
            if not self._fill():
                return None
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out


class RawUpstream:
    """Listens on 127.0.0.1 (a free port); `arrivals` in order of header arrival."""

    def __init__(self, respond: Optional[Callable[[Arrival], Reply]] = None):
        self.respond = respond or echo_reply
        self.arrivals: List[Arrival] = []
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self._stop = False
        self._conns: list = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    # -- records ----------------------------------------------------------------------
    def _record(self, a: Arrival) -> None:
        with self.lock:
            self.arrivals.append(a)

    def mark(self) -> int:
        with self.lock:
            return len(self.arrivals)

    def since(self, mark: int) -> List[Arrival]:
        with self.lock:
            return list(self.arrivals[mark:])

    def with_header(self, name: str, value: str, since: int = 0) -> List[Arrival]:
        """Arrivals carrying header `name` (any case) with exactly `value`."""
        return [a for a in self.since(since) if value in a.header_all(name)]

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> "RawUpstream":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop = True
        try:
            self.sock.close()
        except OSError:
            pass
        for c in list(self._conns):
            try:
                c.shutdown(socket.SHUT_RDWR)
                c.close()
            except OSError:
                pass

    def __enter__(self) -> "RawUpstream":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            first = b""
            while len(first) < len(H2_PREFACE) and H2_PREFACE.startswith(first):
                data = conn.recv(len(H2_PREFACE) - len(first))
                if not data:
                    return
                first += data
            if first == H2_PREFACE:
                self._serve_h2(conn, first)
            else:
                self._serve_h1(conn, first)
        except Exception:   # a connection Envoy reset, or bytes h2 refuses: the record stands
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass
            if conn in self._conns:
                self._conns.remove(conn)

    # -- HTTP/1.1 ---------------------------------------------------------------------
    def _serve_h1(self, conn: socket.socket, initial: bytes) -> None:
        r = _Reader(conn, initial)
        while True:
            head = r.until(b"\r\n\r\n")
            if head is None:
                return
            lines = head.split(b"\r\n")
            a = Arrival("h1", time.monotonic(), request_line=lines[0], header_lines=lines[1:])
            parts = lines[0].decode("latin-1").split(" ")
            a.method = parts[0]
            a.path = parts[1] if len(parts) > 1 else ""
            for line in lines[1:]:
                k, _, v = line.decode("latin-1").partition(":")
                a.headers.append((k.strip(), v.strip()))
            self._record(a)
            te = ",".join(a.header_all("transfer-encoding")).lower()
            if "chunked" in te:
                if not self._read_chunked(r, a):
                    a.aborted = True
                    return
            elif a.header("content-length"):
                data = r.exact(int(a.header("content-length")))
                if data is None:
                    a.aborted = True
                    return
                a.body += data
            a.t_body_end = time.monotonic()
            a.complete = True
            self._reply_h1(conn, a)
            if (a.header("connection") or "").lower() == "close":
                return

    @staticmethod
    def _read_chunked(r: _Reader, a: Arrival) -> bool:
        while True:
            line = r.until(b"\r\n")
            if line is None:
                return False
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while True:
                    t = r.until(b"\r\n")
                    if t is None:
                        return False
                    if t == b"":
                        return True
                    k, _, v = t.decode("latin-1").partition(":")
                    a.trailers.append((k.strip(), v.strip()))
            data = r.exact(size)
            if data is None or r.exact(2) is None:
                return False
            a.body += data

    def _reply_h1(self, conn: socket.socket, a: Arrival) -> None:
        rep = self.respond(a)
        out = [f"HTTP/1.1 {rep.status} X\r\n".encode()]
        for k, v in rep.headers:
            out.append(f"{k}: {v}\r\n".encode("latin-1"))
        if rep.trailers:
            out.append(b"transfer-encoding: chunked\r\n\r\n")
            if rep.body:
                out.append(b"%x\r\n%s\r\n" % (len(rep.body), rep.body))
            out.append(b"0\r\n")
            for k, v in rep.trailers:
                out.append(f"{k}: {v}\r\n".encode("latin-1"))
            out.append(b"\r\n")
        else:
            out.append(f"content-length: {len(rep.body)}\r\n\r\n".encode())
            if a.method.upper() != "HEAD":
                out.append(rep.body)
        conn.sendall(b"".join(out))

    # -- HTTP/2 -----------------------------------------------------------------------
    def _serve_h2(self, conn: socket.socket, initial: bytes) -> None:
        cfg = h2.config.H2Configuration(client_side=False, header_encoding=None,
                                        validate_inbound_headers=False,
                                        normalize_inbound_headers=False)
        h = h2.connection.H2Connection(config=cfg)
        h.initiate_connection()
        conn.sendall(h.data_to_send())
        streams: dict = {}
        data = initial
        while True:
            for ev in h.receive_data(data):
                if isinstance(ev, h2.events.RequestReceived):
                    a = Arrival("h2", time.monotonic())
                    pseudo = {}
                    for k, v in ev.headers:
                        ks, vs = k.decode("latin-1"), v.decode("latin-1")
                        a.header_lines.append(k + b": " + v)
                        if ks.startswith(":"):
                            pseudo[ks] = vs
                        else:
                            a.headers.append((ks, vs))
                    a.method = pseudo.get(":method", "")
                    a.path = pseudo.get(":path", "")
                    a.request_line = f"{a.method} {a.path} HTTP/2".encode("latin-1")
                    streams[ev.stream_id] = a
                    self._record(a)
                elif isinstance(ev, h2.events.DataReceived):
                    a = streams.get(ev.stream_id)
                    if a is not None:
                        a.body += ev.data
                    h.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.TrailersReceived):
                    a = streams.get(ev.stream_id)
                    if a is not None:
                        a.trailers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in ev.headers]
                elif isinstance(ev, h2.events.StreamEnded):
                    a = streams.pop(ev.stream_id, None)
                    if a is not None:
                        a.t_body_end = time.monotonic()
                        a.complete = True
                        self._reply_h2(h, ev.stream_id, a)
                elif isinstance(ev, h2.events.StreamReset):
                    a = streams.pop(ev.stream_id, None)
                    if a is not None:
                        a.aborted = True
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    conn.sendall(h.data_to_send())
                    return
            out = h.data_to_send()
            if out:
                conn.sendall(out)
            data = conn.recv(65536)
            if not data:
                for a in streams.values():
                    a.aborted = True
                return

    def _reply_h2(self, h, stream_id: int, a: Arrival) -> None:
        rep = self.respond(a)
        headers = [(":status", str(rep.status))] + [(k.lower(), v) for k, v in rep.headers]
        if not rep.trailers:
            headers.append(("content-length", str(len(rep.body))))
        end_after_headers = not rep.body and not rep.trailers
        h.send_headers(stream_id, headers, end_stream=end_after_headers)
        if rep.body:
            h.send_data(stream_id, rep.body, end_stream=not rep.trailers)
        if rep.trailers:
            h.send_headers(stream_id, [(k.lower(), v) for k, v in rep.trailers], end_stream=True)
