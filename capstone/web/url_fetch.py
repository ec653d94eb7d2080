"""Fetch an image that a web visitor names by URL, without letting them reach our own network.

A server that downloads any URL it is given can be made to read what only it can reach:
``http://127.0.0.1:…/admin``, a router at ``192.168.0.1``, the cloud metadata service at
``169.254.169.254`` ("server-side request forgery"). So ``fetch_url``:

* accepts only http:// and https:// URLs;
* resolves the host name itself and refuses it when *any* of its addresses is loopback,
  private, link-local, multicast, reserved or otherwise not on the public internet;
* connects to the very address it checked (not to the name again: a second DNS answer could
  point elsewhere, "DNS rebinding"), sending the name only as ``Host`` and for TLS;
* follows a few redirects itself, checking every hop the same way;
* stops after ``timeout`` seconds in all and after ``max_bytes`` bytes.

No proxy from the environment is used: a proxy would do its own, unchecked, resolution.
"""

import http.client
import ipaddress
import socket
import ssl
import time
import urllib.parse

from capstone.errors import CapstoneError

REDIRECT_STATUSES = (301, 302, 303, 307, 308)
MAX_URL_LENGTH = 2048
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # IPv6 addresses that stand for an embedded IPv4 one


class UrlFetchError(CapstoneError):
    """A URL we refuse or could not fetch; ``status`` is the HTTP status to answer with."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status  # 400 refused URL, 413 too big, 502 remote failure, 504 too slow


def is_public_address(address):
    """True when ``address`` (str or ipaddress object) is a public unicast internet address.

    "8.8.8.8" -> True;  "127.0.0.1", "10.1.2.3", "169.254.169.254", "::1", "fd00::1",
    "224.0.0.1", "::ffff:127.0.0.1" -> False.
    """
    ip = ipaddress.ip_address(address)
    # IPv6 forms that carry an IPv4 address are judged by the IPv4 address they reach.
    if ip.version == 6:
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return is_public_address(embedded)
    special = (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast
               or ip.is_reserved or ip.is_unspecified or (ip.version == 6 and ip.is_site_local))
    return ip.is_global and not special


def _split_url(url):
    """url -> (scheme, host, port, path with query), or UrlFetchError saying what is wrong."""
    if not isinstance(url, str) or not url.strip():
        raise UrlFetchError("url: expected an http:// or https:// address")
    if len(url) > MAX_URL_LENGTH:
        raise UrlFetchError(f"url: longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urllib.parse.urlsplit(url.strip())
        port = parts.port
    except ValueError as error:
        raise UrlFetchError(f"url: not a valid address ({error})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UrlFetchError(f"url: only http:// and https:// addresses are fetched, not {scheme or 'this'}:")
    if not parts.hostname:
        raise UrlFetchError(f"url: {url!r} names no host")
    if parts.username is not None or parts.password is not None:
        raise UrlFetchError("url: addresses with a user name or password are not fetched")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return scheme, parts.hostname, port or (443 if scheme == "https" else 80), path


def resolve_checked(host, port, address_allowed, resolve=socket.getaddrinfo):
    """Every address of ``host``, or UrlFetchError when it has none or any one is not allowed.

    Refusing the whole name (not just its bad addresses) means a name that mixes a public
    and a private address cannot be used to probe the private one.
    """
    try:
        answers = resolve(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise UrlFetchError(f"url: cannot resolve host {host!r} ({error})", status=502) from None
    addresses = []
    for _family, _type, _proto, _name, sockaddr in answers:
        address = sockaddr[0]
        if not address_allowed(address):
            raise UrlFetchError(f"url: host {host!r} is at {address}, a private or local address; refused")
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise UrlFetchError(f"url: host {host!r} has no address", status=502)
    return addresses


def _connect_any(addresses, port, timeout):
    """A TCP socket to the first of ``addresses`` that answers (all were checked already)."""
    last_error = None
    for address in addresses:
        try:
            return socket.create_connection((address, port), timeout=timeout)
        except OSError as error:
            last_error = error
    raise last_error


class PinnedHTTPConnection(http.client.HTTPConnection):
    """HTTP to ``host`` that connects to the checked ``addresses`` instead of resolving again."""

    def __init__(self, host, port, addresses, timeout):
        super().__init__(host, port, timeout=timeout)
        self.addresses = addresses

    def connect(self):
        self.sock = self.opened_socket = _connect_any(self.addresses, self.port, self.timeout)


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS likewise; the certificate is still verified against the host *name*."""

    def __init__(self, host, port, addresses, timeout, tls_context):
        super().__init__(host, port, timeout=timeout, context=tls_context)
        self.addresses = addresses
        self.tls_context = tls_context

    def connect(self):
        raw = _connect_any(self.addresses, self.port, self.timeout)
        self.sock = self.opened_socket = self.tls_context.wrap_socket(raw, server_hostname=self.host)


def _read_body(response, sock, url, max_bytes, deadline):
    """The response body, refusing more than ``max_bytes`` and stopping at ``deadline``.

    Each read waits at most the time left, so a server that trickles bytes cannot hold us.
    """
    declared = response.getheader("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise UrlFetchError(f"url: {url} is {int(declared)} bytes, more than the limit of {max_bytes}", status=413)
    chunks, size = [], 0
    while True:
        sock.settimeout(_remaining(deadline, url))
        chunk = response.read1(65536)  # read1: at most one socket read, so the deadline is checked often
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > max_bytes:
            raise UrlFetchError(f"url: {url} is more than the limit of {max_bytes} bytes", status=413)
        chunks.append(chunk)


def _remaining(deadline, url):
    """Seconds left before ``deadline``, or UrlFetchError when none are."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise UrlFetchError(f"url: {url} took too long to answer", status=504)
    return remaining


def fetch_url(url, max_bytes, timeout=10.0, max_redirects=3, allow_private=False, address_allowed=None,
              resolve=socket.getaddrinfo, tls_context=None):
    """GET ``url`` and return its body (bytes); UrlFetchError says why not.

    max_bytes: largest body accepted.     timeout: seconds for everything, redirects included.
    allow_private: also fetch loopback/private addresses (a server only you can reach).
    address_allowed: a rule address -> bool to use instead (tests); resolve: getaddrinfo's stand-in.
    """
    if address_allowed is None:
        address_allowed = (lambda _address: True) if allow_private else is_public_address
    tls_context = tls_context or ssl.create_default_context()
    deadline = time.monotonic() + timeout
    original = url
    for _hop in range(max_redirects + 1):
        scheme, host, port, path = _split_url(url)
        addresses = resolve_checked(host, port, address_allowed, resolve)
        if scheme == "https":
            connection = PinnedHTTPSConnection(host, port, addresses, timeout, tls_context)
        else:
            connection = PinnedHTTPConnection(host, port, addresses, timeout)
        try:
            connection.timeout = _remaining(deadline, url)
            connection.request("GET", path, headers={"User-Agent": "capstone-caption-service", "Accept": "image/*"})
            connection.opened_socket.settimeout(_remaining(deadline, url))
            response = connection.getresponse()
            if response.status in REDIRECT_STATUSES:
                location = response.getheader("Location")
                if not location:
                    raise UrlFetchError(f"url: {url} redirects without saying where", status=502)
                url = urllib.parse.urljoin(url, location)  # checked like the first URL on the next hop
                continue
            if response.status != 200:
                raise UrlFetchError(f"url: {url} answered HTTP {response.status} {response.reason}", status=502)
            return _read_body(response, connection.opened_socket, url, max_bytes, deadline)
        except socket.timeout:
            raise UrlFetchError(f"url: {url} took too long to answer", status=504) from None
        except (OSError, http.client.HTTPException, ValueError) as error:
            raise UrlFetchError(f"url: cannot fetch {url} ({type(error).__name__}: {error})", status=502) from None
        finally:
            connection.close()
    raise UrlFetchError(f"url: {original} redirects more than {max_redirects} times", status=502)
