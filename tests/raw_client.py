"""Raw clients that send exactly the bytes a test names: HTTP/1.1 over a socket, HTTP/2 cleartext
with prior knowledge (the `h2` package, every outbound check off).

Nothing is normalised on the way: the request target, the method's case, header names with `_`,
repeated headers, chunk sizes and timing are the test's. Bodies go in pieces with pauses between
them, so a test can tell whether Envoy forwarded the headers before the body was complete (the
`t_*` fields use time.monotonic(), the clock raw_upstream.Arrival uses). A piece is not sent once
the answer has arrived (the filter refused early); `sent_all` says whether everything went.

    r = h1(port, "GET", "/public/%2e%2e;/admin/x", [("host", "a")])
    r = h2(port, "post", "/login", [("x_user_id", "admin")], pieces=[b'{"a":', b'1}'], delay=0.3,
           trailers=[("x-user-id", "admin")])
"""

from __future__ import annotations

import select
import socket
import time
from dataclasses import dataclass, field
from typing import Iterable, List, Optional, Sequence, Tuple

from h2 import events as h2events
from h2 import exceptions as h2exc
from h2.config import H2Configuration
from h2.connection import H2Connection

Pairs = List[Tuple[str, str]]


@dataclass
class RawResponse:
    proto: str
    status: int = 0                     # 0: no response (connection closed, stream reset)
    headers: Pairs = field(default_factory=list)
    body: bytes = b""
    trailers: Pairs = field(default_factory=list)
    reset: Optional[int] = None         # h2 RST_STREAM / GOAWAY error code
    closed: bool = False                # the connection ended without a (complete) response
    timed_out: bool = False             # no (complete) response within the timeout
    t_headers_sent: float = 0.0
    t_body_sent: Optional[float] = None  # when the last body piece (or the trailers) went out
    sent_all: bool = True

    def header_all(self, name: str) -> list:
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def header(self, name: str) -> Optional[str]:
        vals = self.header_all(name)
        return vals[0] if vals else None

    def json(self):
        import json
        return json.loads(self.body)

    def __repr__(self) -> str:
        return (f"RawResponse({self.proto} {self.status} reset={self.reset} closed={self.closed} "
                f"headers={self.headers} body={self.body[:300]!r} trailers={self.trailers})")


def _connect(port: int, source_ip: Optional[str], timeout: float) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                 source_address=(source_ip, 0) if source_ip else None)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def _readable(sock: socket.socket) -> bool:
    r, _, _ = select.select([sock], [], [], 0)
    return bool(r)


# -- HTTP/1.1 ------------------------------------------------------------------------------

def h1_head(method: str, target: str, headers: Iterable[Tuple[str, str]], version: str = "HTTP/1.1") -> bytes:
    """The request line and header block, byte for byte (latin-1)."""
    lines = [f"{method} {target} {version}"] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _parse_h1_response(data: bytes, method: str) -> Optional[RawResponse]:
    """A complete response from `data`, or None if more bytes are needed."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = data[:end].decode("latin-1").split("\r\n")
    r = RawResponse("h1")
    parts = lines[0].split(" ", 2)
    r.status = int(parts[1])
    for line in lines[1:]:
        k, _, v = line.partition(":")
        r.headers.append((k.strip().lower(), v.strip()))
    rest = data[end + 4:]
    if method.upper() == "HEAD" or r.status in (204, 304) or 100 <= r.status < 200:
        return r
    if "chunked" in ",".join(r.header_all("transfer-encoding")).lower():
        body = bytearray()
        while True:
            i = rest.find(b"\r\n")
            if i < 0:
                return None
            size = int(rest[:i].split(b";")[0] or b"0", 16)
            rest = rest[i + 2:]
            if size == 0:
                while True:
                    j = rest.find(b"\r\n")
                    if j < 0:
                        return None
                    line, rest = rest[:j], rest[j + 2:]
                    if not line:
                        r.body = bytes(body)
                        return r
                    k, _, v = line.decode("latin-1").partition(":")
                    r.trailers.append((k.strip().lower(), v.strip()))
            if len(rest) < size + 2:
                return None
            body += rest[:size]
            rest = rest[size + 2:]
    if r.header("content-length") is not None:
        n = int(r.header("content-length"))
        if len(rest) < n:
            return None
        r.body = rest[:n]
        return r
    return None  # read until close


def h1_send(port: int, head: bytes, pieces: Sequence[bytes] = (), *, delay: float = 0.0,
            pause_after_headers: float = 0.0, method: str = "GET", source_ip: Optional[str] = None,
            timeout: float = 10.0) -> RawResponse:
    """Sends `head`, then each piece (pauses between), and reads one response."""
    sock = _connect(port, source_ip, timeout)
    data = b""
    sent_all = True
    timed_out = False
    t_head = 0.0
    t_body = None
    try:
        sock.sendall(head)
        t_head = time.monotonic()
        for i, piece in enumerate(pieces):
            wait = pause_after_headers if i == 0 else delay
            if wait:
                time.sleep(wait)
            if _readable(sock):
                sent_all = False
                break
            try:
                sock.sendall(piece)
            except OSError:
                sent_all = False
                break
            t_body = time.monotonic()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                timed_out = True
                break
            except OSError:
                chunk = b""
            if not chunk:
                break
            data += chunk
            if _parse_h1_response(data, method) is not None:
                break
    finally:
        sock.close()
    r = _parse_h1_response(data, method)
    if r is None:
        r = RawResponse("h1", closed=True)
        if data.startswith(b"HTTP/"):
            try:
                r.status = int(data.split(b" ", 2)[1])
            except (IndexError, ValueError):
                pass
            hdr_end = data.find(b"\r\n\r\n")
            r.body = data[hdr_end + 4:] if hdr_end >= 0 else b""
    r.t_headers_sent, r.t_body_sent, r.sent_all = t_head, t_body, sent_all
    r.timed_out = timed_out and r.closed
    return r


def chunked(pieces: Sequence[bytes], trailers: Optional[Iterable[Tuple[str, str]]] = None) -> List[bytes]:
    """`pieces` as HTTP/1.1 chunks; the last element carries the zero chunk and the trailers."""
    out = [b"%x\r\n%s\r\n" % (len(p), p) for p in pieces if p]
    tail = b"0\r\n" + b"".join(f"{k}: {v}\r\n".encode("latin-1") for k, v in (trailers or [])) + b"\r\n"
    return out + [tail]


def h1(port: int, method: str, target: str, headers: Optional[Iterable[Tuple[str, str]]] = None,
       body: Optional[bytes] = None, *, pieces: Optional[Sequence[bytes]] = None, chunk: bool = False,
       trailers: Optional[Iterable[Tuple[str, str]]] = None, delay: float = 0.0,
       pause_after_headers: float = 0.0, content_length: bool = False, host: str = "127.0.0.1",
       source_ip: Optional[str] = None, timeout: float = 10.0) -> RawResponse:
    """One HTTP/1.1 request with `connection: close`.

    `body` goes with a content-length (unless the headers set framing); `pieces` (or `chunk=True`)
    go chunked, one chunk per piece, `trailers` after the last one; with `content_length=True`
    the pieces go as they are, after a content-length of their total."""
    hdrs = list(headers or [])
    names = {k.lower() for k, _ in hdrs}
    if "host" not in names:
        hdrs.insert(0, ("host", host))
    if "connection" not in names:
        hdrs.append(("connection", "close"))
    if pieces is None and (chunk or trailers):
        pieces = [body or b""]
    if pieces is not None and content_length:
        if "content-length" not in names:
            hdrs.append(("content-length", str(sum(len(p) for p in pieces))))
        send = list(pieces)
    elif pieces is not None:
        if "transfer-encoding" not in names:
            hdrs.append(("transfer-encoding", "chunked"))
        send = chunked(pieces, trailers)
    elif body is not None:
        if "content-length" not in names and "transfer-encoding" not in names:
            hdrs.append(("content-length", str(len(body))))
        send = [body]
    else:
        send = []
    return h1_send(port, h1_head(method, target, hdrs), send, delay=delay,
                   pause_after_headers=pause_after_headers, method=method, source_ip=source_ip,
                   timeout=timeout)


# -- HTTP/2 (h2c, prior knowledge) ---------------------------------------------------------

def _h2_conn() -> H2Connection:
    cfg = H2Configuration(client_side=True, header_encoding=None,
                                    validate_outbound_headers=False, normalize_outbound_headers=False,
                                    validate_inbound_headers=False, normalize_inbound_headers=False)
    return H2Connection(config=cfg)


class _H2Exchange:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.conn = _h2_conn()
        self.resp = RawResponse("h2")
        self.done = False
        self.got_settings = False

    def flush(self) -> None:
        out = self.conn.data_to_send()
        if out:
            self.sock.sendall(out)

    def pump(self, block: bool) -> None:
        """Reads what has arrived (waits for something when `block`) and handles it."""
        if not block and not _readable(self.sock):
            return
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise
        except OSError:
            data = b""
        if not data:
            self.done = True
            if not self.resp.status:
                self.resp.closed = True
            return
        try:
            events = self.conn.receive_data(data)
        except h2exc.ProtocolError:
            self.done = self.resp.closed = True
            return
        for ev in events:
            if isinstance(ev, h2events.ResponseReceived):
                for k, v in ev.headers:
                    ks, vs = k.decode("latin-1"), v.decode("latin-1")
                    if ks == ":status":
                        self.resp.status = int(vs)
                    else:
                        self.resp.headers.append((ks, vs))
            elif isinstance(ev, h2events.DataReceived):
                self.resp.body += ev.data
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2events.TrailersReceived):
                self.resp.trailers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in ev.headers]
            elif isinstance(ev, h2events.StreamEnded) and ev.stream_id == 1:
                self.done = True
            elif isinstance(ev, h2events.StreamReset) and ev.stream_id == 1:
                self.resp.reset = int(ev.error_code)
                self.done = True
            elif isinstance(ev, h2events.ConnectionTerminated):
                if self.resp.reset is None and not self.done:
                    self.resp.reset = int(ev.error_code)
                self.done = True
            elif isinstance(ev, h2events.RemoteSettingsChanged):
                self.got_settings = True
        try:
            self.flush()
        except OSError:
            self.done = True

    def send_data(self, data: bytes, end_stream: bool) -> bool:
        """Sends within the flow-control windows; False when the stream ended meanwhile."""
        view = memoryview(data)
        while True:
            if self.done:
                return False
            window = min(self.conn.local_flow_control_window(1), self.conn.max_outbound_frame_size)
            if window <= 0 and view:
                self.pump(block=True)
                continue
            n = min(window, len(view))
            last = n == len(view)
            self.conn.send_data(1, bytes(view[:n]), end_stream=end_stream and last)
            self.flush()
            view = view[n:]
            if last:
                return True


def h2(port: int, method: str, path: str, headers: Optional[Iterable[Tuple[str, str]]] = None,
       body: Optional[bytes] = None, *, pieces: Optional[Sequence[bytes]] = None,
       trailers: Optional[Iterable[Tuple[str, str]]] = None, delay: float = 0.0,
       pause_after_headers: float = 0.0, authority: str = "127.0.0.1", scheme: str = "http",
       pseudo: Optional[Pairs] = None, source_ip: Optional[str] = None,
       timeout: float = 10.0) -> RawResponse:
    """One request on a fresh h2c connection (stream 1). `pseudo` replaces the pseudo-headers
    (`:method`, `:scheme`, `:authority`, `:path`) with exactly the given list. The body is `body`
    or `pieces` (one DATA frame or more each), then `trailers` (a HEADERS frame ending the stream)."""
    sock = _connect(port, source_ip, timeout)
    ex = _H2Exchange(sock)
    try:
        ex.conn.initiate_connection()
        ex.flush()
        # Envoy's SETTINGS first (its windows); then the request.
        deadline = time.monotonic() + timeout
        while not ex.got_settings and not ex.done and time.monotonic() < deadline:
            ex.pump(block=True)
        hdrs = list(pseudo) if pseudo is not None else [
            (":method", method), (":scheme", scheme), (":authority", authority), (":path", path)]
        hdrs += list(headers or [])
        if pieces is None and body is not None:
            pieces = [body]
        pieces = list(pieces or [])
        trailers = list(trailers or [])
        enc = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in hdrs]
        ex.conn.send_headers(1, enc, end_stream=not pieces and not trailers)
        ex.flush()
        ex.resp.t_headers_sent = time.monotonic()
        for i, piece in enumerate(pieces):
            wait = pause_after_headers if i == 0 else delay
            if wait:
                time.sleep(wait)
            ex.pump(block=False)
            if ex.done or ex.resp.status:
                ex.resp.sent_all = False
                break
            last = i == len(pieces) - 1
            if not ex.send_data(piece, end_stream=last and not trailers):
                ex.resp.sent_all = False
                break
            ex.resp.t_body_sent = time.monotonic()
        if trailers and ex.resp.sent_all and not ex.done:
            if delay:
                time.sleep(delay)
            ex.pump(block=False)
            if not ex.done and not ex.resp.status:
                ex.conn.send_headers(1, [(k.encode("latin-1"), v.encode("latin-1")) for k, v in trailers],
                                     end_stream=True)
                ex.flush()
                ex.resp.t_body_sent = time.monotonic()
            else:
                ex.resp.sent_all = False
        while not ex.done and time.monotonic() < deadline + timeout:
            try:
                ex.pump(block=True)
            except socket.timeout:
                ex.resp.closed = ex.resp.timed_out = True
                break
    except (OSError, h2exc.H2Error):
        ex.resp.closed = True
    finally:
        try:
            sock.close()
        except OSError:
            pass
    return ex.resp


def request(proto: str, port: int, method: str, path: str, headers=None, body=None, **kw) -> RawResponse:
    """`h1` or `h2` by name (tests parametrised over both). For h1, `pieces` go chunked."""
    if proto == "h1":
        return h1(port, method, path, headers, body, **kw)
    kw.pop("chunk", None)
    kw.pop("host", None)
    kw.pop("content_length", None)
    return h2(port, method, path, headers, body, **kw)
