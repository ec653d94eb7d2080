"""capstone.web.url_fetch: only public http(s) addresses, the checked address is the one connected to,
every redirect hop checked, time and size capped. All servers run on 127.0.0.1."""

import http.server
import shutil
import socket
import ssl
import subprocess
import threading
import time

import pytest

from capstone.web.url_fetch import UrlFetchError, fetch_url, is_public_address

PNG_BYTES = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


class TinyServer:
    """HTTP on 127.0.0.1; ``routes`` maps a path to handler(request_handler). Records (path, Host)."""

    def __init__(self, routes):
        self.routes = routes
        self.requests = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Host")))
                route = server.routes.get(self.path)
                if route is None:
                    self.send_error(404)
                else:
                    route(self)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def send_bytes(body, content_length=True):
    def route(handler):
        handler.send_response(200)
        handler.send_header("Content-Type", "image/png")
        if content_length:
            handler.send_header("Content-Length", str(len(body)))
        else:
            handler.close_connection = True  # body ends when the connection closes
        handler.end_headers()
        handler.wfile.write(body)
    return route


def redirect_to(location):
    def route(handler):
        handler.send_response(302)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()
    return route


def loopback_or_public(address):
    """Our test server counts as allowed; everything else follows the real rule."""
    return address == "127.0.0.1" or is_public_address(address)


@pytest.mark.parametrize("address, public", [
    ("8.8.8.8", True), ("2606:4700:4700::1111", True), ("93.184.216.34", True),
    ("127.0.0.1", False), ("127.8.9.10", False), ("10.1.2.3", False), ("172.16.0.1", False),
    ("192.168.1.1", False), ("169.254.169.254", False), ("100.64.0.1", False), ("0.0.0.0", False),
    ("224.0.0.1", False), ("239.255.255.250", False), ("240.0.0.1", False), ("255.255.255.255", False),
    ("::1", False), ("::", False), ("fe80::1", False), ("fd00::1", False), ("ff02::1", False), ("fec0::1", False),
    ("::ffff:127.0.0.1", False), ("::ffff:8.8.8.8", True), ("2002:7f00:1::", False), ("64:ff9b::a00:1", False),
])
def test_is_public_address(address, public):
    assert is_public_address(address) is public


@pytest.mark.parametrize("url, message", [
    ("file:///etc/passwd", "only http:// and https://"),
    ("ftp://example.com/a.png", "only http:// and https://"),
    ("gopher://example.com:70/_x", "only http:// and https://"),
    ("javascript:alert(1)", "only http:// and https://"),
    ("//example.com/a.png", "only http:// and https://"),
    ("", "expected an http"),
    ("http://", "names no host"),
    ("http://user:secret@example.com/a.png", "user name or password"),
    ("http://example.com:99999/a.png", "not a valid address"),
    ("http://example.com/" + "a" * 3000, "longer than"),
])
def test_bad_urls_are_refused_before_any_lookup(url, message):
    def no_lookup(*args, **kwargs):
        raise AssertionError("must not resolve")
    with pytest.raises(UrlFetchError, match=message) as caught:
        fetch_url(url, max_bytes=1000, resolve=no_lookup)
    assert caught.value.status == 400


def test_loopback_and_private_hosts_are_refused_after_resolution():
    with TinyServer({"/a.png": send_bytes(PNG_BYTES)}) as server:
        for url in (f"{server.url}/a.png", f"http://localhost:{server.port}/a.png",
                    f"http://2130706433:{server.port}/a.png",  # 127.0.0.1 written as one number
                    f"http://0x7f.1:{server.port}/a.png", f"http://[::ffff:127.0.0.1]:{server.port}/a.png"):
            with pytest.raises(UrlFetchError, match="private or local address; refused") as caught:
                fetch_url(url, max_bytes=10_000)
            assert caught.value.status == 400
        assert server.requests == []  # refused before connecting


def test_a_name_with_one_private_address_among_public_ones_is_refused():
    def mixed(host, port, **kwargs):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("8.8.8.8", port)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", port))]
    with pytest.raises(UrlFetchError, match="10.0.0.7"):
        fetch_url("http://mixed.example/a.png", max_bytes=100, resolve=mixed)


def test_allow_private_fetches_from_a_local_server():
    with TinyServer({"/a.png": send_bytes(PNG_BYTES)}) as server:
        assert fetch_url(f"{server.url}/a.png", max_bytes=10_000, allow_private=True) == PNG_BYTES
        assert server.requests == [("/a.png", f"127.0.0.1:{server.port}")]


def test_connects_to_the_address_it_checked_not_to_a_second_dns_answer():
    calls = []

    def rebinding_dns(host, port, **kwargs):
        """First answer: our test server; any later answer: somewhere else (a rebinding attack)."""
        calls.append(host)
        address = "127.0.0.1" if len(calls) == 1 else "10.255.255.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    with TinyServer({"/a.png": send_bytes(PNG_BYTES)}) as server:
        body = fetch_url(f"http://photos.example:{server.port}/a.png", max_bytes=10_000, timeout=3,
                         address_allowed=loopback_or_public, resolve=rebinding_dns)
        assert body == PNG_BYTES
        assert calls == ["photos.example"]  # resolved once, and that answer was used
        assert server.requests == [("/a.png", f"photos.example:{server.port}")]  # the name still goes in Host


def test_redirects_are_followed_and_every_hop_is_checked():
    routes = {
        "/a.png": send_bytes(PNG_BYTES),
        "/moved": redirect_to("/a.png"),
        "/to-metadata": redirect_to("http://169.254.169.254/latest/meta-data/"),
        "/to-intranet": redirect_to("http://10.0.0.5/admin"),
        "/to-file": redirect_to("file:///etc/passwd"),
        "/loop": redirect_to("/loop"),
    }
    with TinyServer(routes) as server:
        fetch = lambda path: fetch_url(server.url + path, max_bytes=10_000, timeout=5,  # noqa: E731
                                       address_allowed=loopback_or_public)
        assert fetch("/moved") == PNG_BYTES
        for path, message in (("/to-metadata", "169.254.169.254"), ("/to-intranet", "10.0.0.5"),
                              ("/to-file", "only http")):
            with pytest.raises(UrlFetchError, match=message):
                fetch(path)
        server.requests.clear()
        with pytest.raises(UrlFetchError, match="redirects more than 3 times"):
            fetch("/loop")
        assert len(server.requests) == 4  # the first request and 3 redirects, then it stopped


def test_bodies_over_the_byte_cap_are_refused():
    big = b"x" * 5000
    with TinyServer({"/declared": send_bytes(big), "/undeclared": send_bytes(big, content_length=False),
                     "/small": send_bytes(big[:100], content_length=False)}) as server:
        for path in ("/declared", "/undeclared"):
            with pytest.raises(UrlFetchError, match="limit of 1000") as caught:
                fetch_url(server.url + path, max_bytes=1000, allow_private=True)
            assert caught.value.status == 413
        assert fetch_url(server.url + "/small", max_bytes=1000, allow_private=True) == big[:100]


def test_a_slow_server_is_cut_off_at_the_time_limit():
    def trickle(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", "1000")
        handler.end_headers()
        try:
            for _ in range(1000):  # one byte every 0.1 s: each read is quick, the whole is not
                handler.wfile.write(b"x")
                handler.wfile.flush()
                time.sleep(0.1)
        except OSError:
            pass

    def silent(handler):
        time.sleep(3)

    with TinyServer({"/trickle": trickle, "/silent": silent}) as server:
        for path in ("/trickle", "/silent"):
            started = time.monotonic()
            with pytest.raises(UrlFetchError, match="took too long") as caught:
                fetch_url(server.url + path, max_bytes=10_000, timeout=1.0, allow_private=True)
            assert caught.value.status == 504
            assert time.monotonic() - started < 2.0


def test_remote_failures_are_clear_errors():
    with TinyServer({}) as server:
        with pytest.raises(UrlFetchError, match="answered HTTP 404") as caught:
            fetch_url(server.url + "/missing.png", max_bytes=100, allow_private=True)
        assert caught.value.status == 502

    def no_such_host(host, port, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    with pytest.raises(UrlFetchError, match="cannot resolve host 'nowhere.example'"):
        fetch_url("http://nowhere.example/a.png", max_bytes=100, resolve=no_such_host)

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    with pytest.raises(UrlFetchError, match="cannot fetch") as caught:
        fetch_url(f"http://127.0.0.1:{port}/a.png", max_bytes=100, allow_private=True)
    assert caught.value.status == 502


def self_signed_certificate(folder, host_name):
    """(cert path, key path) of a certificate for ``host_name``, made with the openssl command."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    f"/CN={host_name}", "-addext", f"subjectAltName=DNS:{host_name}", "-keyout", str(key),
                    "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def test_https_goes_to_the_checked_address_and_verifies_the_host_name(tmp_path):
    cert, key = self_signed_certificate(tmp_path, "photos.example")
    with TinyServer({"/a.png": send_bytes(PNG_BYTES)}) as server:
        server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_side.load_cert_chain(cert, key)
        server.httpd.socket = server_side.wrap_socket(server.httpd.socket, server_side=True)
        trusting = ssl.create_default_context(cafile=str(cert))  # trusts our certificate and nothing else

        def dns(host, port, **kwargs):
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

        url = f"https://photos.example:{server.port}/a.png"
        assert fetch_url(url, max_bytes=10_000, timeout=5, address_allowed=loopback_or_public, resolve=dns,
                         tls_context=trusting) == PNG_BYTES
        # the same server under another name: its certificate does not match, so nothing is fetched
        with pytest.raises(UrlFetchError, match="cannot fetch.*(certificate|CERTIFICATE)"):
            fetch_url(f"https://other.example:{server.port}/a.png", max_bytes=10_000, timeout=5,
                      address_allowed=loopback_or_public, resolve=dns, tls_context=trusting)
        assert server.requests == [("/a.png", f"photos.example:{server.port}")]
