"""A real HTTP/1.1 upstream that echoes what it received, as JSON.

Response body: {"method", "path", "headers": [[name, value], ...], "body"}.
Every response carries `Server: meshwall-echo` and `X-Powered-By: echo` (leaky headers for the
headers filter to remove). Request header `x-echo-status: NNN` sets the status;
`x-echo-header: Name: value` (repeatable) adds a response header.

Run standalone as the demo backend: python3 tests/echo_upstream.py --port 8080
"""

from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Optional

# handler(method, path, headers, body) -> (status, [(name, value)], body bytes)
Handler = Callable[[str, str, list, bytes], tuple]


def echo_handler(method: str, path: str, headers: list, body: bytes):
    status = 200
    extra = []
    for name, value in headers:
        lname = name.lower()
        if lname == "x-echo-status":
            try:
                status = int(value)
            except ValueError:
                status = 400
        elif lname == "x-echo-header" and ":" in value:
            k, v = value.split(":", 1)
            extra.append((k.strip(), v.strip()))
    payload = {
        "method": method,
        "path": path,
        "headers": [[k.lower(), v] for k, v in headers],
        "body": body.decode("utf-8", "replace"),
    }
    out = [("Content-Type", "application/json"), ("X-Powered-By", "echo")] + extra
    return status, out, json.dumps(payload).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "meshwall-echo"
    sys_version = ""

    def log_message(self, *args):  # quiet
        pass

    def _serve(self):
        try:
            self._echo()
        except (BrokenPipeError, ConnectionResetError):
            # Envoy reset the stream (e.g. a filter refused the body after the headers went on).
            self.close_connection = True

    def _echo(self):
        length = self.headers.get("Content-Length")
        if length is not None:
            body = self.rfile.read(int(length))
        elif self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked()
        else:
            body = b""
        status, headers, out = self.server.handler(self.command, self.path, list(self.headers.items()), body)
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)

    def _read_chunked(self) -> bytes:
        chunks = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _serve


class EchoServer:
    """Starts in a background thread on 127.0.0.1 (port 0 = a free one)."""

    def __init__(self, handler: Optional[Handler] = None, port: int = 0):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.handler = handler or echo_handler
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> "EchoServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8080)
    args = ap.parse_args()
    srv = EchoServer(port=args.port)
    print(f"echo upstream listening on 127.0.0.1:{srv.port}", flush=True)
    try:
        srv.httpd.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
