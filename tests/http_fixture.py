"""A small HTTP file server on 127.0.0.1 for download tests, with switches for misbehaving.

    with FileServer({"/v0.1/a.zip": b"..."}) as server:
        download_utils.download_file(server.url + "/v0.1/a.zip", path)
        server.requests  # [("/v0.1/a.zip", None), ...]: (path, Range header) per request

Switches (attributes, change them any time):
    support_range  -- answer ``Range: bytes=N-`` with 206; when False, always 200 and the whole file
    cut_after      -- on the first request only, send this many body bytes, then drop the connection
    status         -- {path: HTTP status} to answer instead, e.g. {"/v0.1/a.zip": 404}
    extra_length   -- claim the file is this many bytes longer than it is (Content-Length lies)
    content_type   -- the Content-Type header ("text/html" together with HTML bytes imitates a login page)
"""

import http.server
import re
import socket
import threading


class FileServer:
    """Serves ``files`` ({url path: bytes}) from a ThreadingHTTPServer in a background thread."""

    def __init__(self, files=None):
        self.files = dict(files or {})
        self.support_range = True
        self.cut_after = None
        self.status = {}
        self.extra_length = 0
        self.content_type = "application/octet-stream"
        self.requests = []  # (path, Range header or None), in arrival order
        self._lock = threading.Lock()
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        # A short poll interval makes shutdown() (and so each test's teardown) quick.
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self):
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def paths_requested(self):
        return [path for path, _ in self.requests]

    def ranges_requested(self):
        return [byte_range for _, byte_range in self.requests]

    def _record(self, path, byte_range):
        """Log one request; True when it is the first one (the one ``cut_after`` applies to)."""
        with self._lock:
            self.requests.append((path, byte_range))
            return len(self.requests) == 1


def _make_handler(server):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            byte_range = self.headers.get("Range")
            first = server._record(self.path, byte_range)
            if self.path in server.status:
                self.send_error(server.status[self.path])
                return
            if self.path not in server.files:
                self.send_error(404)
                return
            body = server.files[self.path]
            claimed_size = len(body) + server.extra_length
            start = _range_start(byte_range) if server.support_range else None
            if start is not None and start >= claimed_size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{claimed_size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if start is None:
                self.send_response(200)
                start = 0
            else:
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{claimed_size - 1}/{claimed_size}")
            self.send_header("Content-Type", server.content_type)
            self.send_header("Content-Length", str(claimed_size - start))
            self.send_header("Accept-Ranges", "bytes" if server.support_range else "none")
            self.end_headers()
            payload = body[start:]
            if first and server.cut_after is not None:
                payload = payload[: server.cut_after]
            self.wfile.write(payload)
            self.wfile.flush()
            if len(payload) < claimed_size - start:
                # Close our side cleanly so the client sees a short body, as after a network cut.
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_WR)

        def log_message(self, format, *args):  # keep the test output quiet
            pass

    return Handler


def _range_start(header):
    """N from "bytes=N-" (the only form download_utils sends), else None."""
    match = re.fullmatch(r"bytes=(\d+)-", header or "")
    return int(match.group(1)) if match else None
