"""``serve`` on waitress, in its own process on 127.0.0.1: slow clients, load, SIGTERM, huge pictures.

The server is tests/serve_process.py with serve_support's tiny model: it starts in seconds, so what
is measured is the server, not a CNN.
"""

import concurrent.futures
import http.client
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from serve_support import SCENES, encode_file, scene_picture, trained_run_dir
from test_serve import png_header_only
from test_serve_load import multipart

HERE = os.path.dirname(os.path.abspath(__file__))


class ServerProcess:
    def __init__(self, tmp_path, *flags):
        port_file = tmp_path / f"port{time.monotonic_ns()}"
        self.log_path = tmp_path / f"server{port_file.name}.log"
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen([sys.executable, os.path.join(HERE, "serve_process.py"), trained_run_dir(),
                                         str(port_file), "--tiny", *flags], stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 120
        while not port_file.exists():
            assert self.process.poll() is None and time.monotonic() < deadline, self.log_text()
            time.sleep(0.1)
        self.address = ("127.0.0.1", int(port_file.read_text()))

    def log_text(self):
        return self.log_path.read_text()

    def rss_kb(self, field="VmRSS"):
        with open(f"/proc/{self.process.pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))

    def stop(self, signal_it=True):
        """Exit status after SIGTERM (one only: Python restores the default handler while it exits)."""
        if signal_it and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        self.log.close()
        return code


@pytest.fixture
def server(tmp_path):
    started = []

    def start(*flags):
        started.append(ServerProcess(tmp_path, *flags))
        return started[-1]
    yield start
    for process in started:
        if process.process.poll() is None:
            process.process.kill()
            process.process.wait()


def request(address, method="GET", path="/healthz", body=None, headers=None, timeout=60):
    """(status, headers dict, body bytes)."""
    connection = http.client.HTTPConnection(*address, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def upload(address, data, path="/api/caption"):
    body, content_type = multipart("image", "photo.png", data)
    return request(address, "POST", path, body, {"Content-Type": content_type})


def picture(i):
    colour, shape = SCENES[i % len(SCENES)]
    return encode_file(scene_picture(colour, shape, rng=np.random.default_rng(i)))


def test_healthz_access_log_and_clean_sigterm(server):
    process = server("--slow-ms", "1500", "--threads", "4")
    assert request(process.address)[:1] == (200,)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        in_flight = [pool.submit(upload, process.address, picture(i)) for i in range(4)]
        time.sleep(0.7)  # accepted and sleeping in the app
        process.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        with pytest.raises(OSError):  # no new connections once stopping
            socket.create_connection(process.address, timeout=2).recv(1)
        answers = [future.result() for future in in_flight]
    assert [status for status, _, _ in answers] == [200] * 4  # the requests in flight finished
    assert process.stop(signal_it=False) == 0
    log = process.log_text()
    assert "GET /healthz 200" in log and log.count("POST /api/caption 200") == 4 and "stopped" in log
    line = next(line for line in log.splitlines() if "POST /api/caption 200" in line)
    assert line.endswith(" ms") and float(line.split()[-2]) >= 1500  # method, path, status, milliseconds


@pytest.mark.slow  # ~15 s of waiting for timeouts; the default run stays near 10 minutes
def test_slow_header_senders_do_not_block_others_and_are_cut_off(server):
    process = server("--threads", "4", "--channel-timeout", "2", "--connection-limit", "60")
    slow = []
    for _ in range(30):  # each sends half a request line, then a byte now and then
        sock = socket.create_connection(process.address, timeout=10)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        slow.append(sock)
    started = time.perf_counter()
    answers = [upload(process.address, picture(i), "/api/caption") for i in range(10)]
    elapsed = time.perf_counter() - started
    assert [status for status, _, _ in answers] == [200] * 10
    print(f"\n10 captions with 30 slow clients connected: {elapsed:.2f} s")
    assert elapsed < 20
    time.sleep(5)  # > channel_timeout + cleanup interval: the silent ones are closed by the server
    closed = 0
    for sock in slow:
        sock.settimeout(2)
        try:
            closed += sock.recv(1) == b""
        except (ConnectionResetError, socket.timeout):
            closed += 0
        sock.close()
    assert closed == 30
    assert process.stop() == 0


def test_bad_input_keeps_its_status_over_waitress(server):
    process = server("--max-upload-mb", "0.1", "--max-megapixels", "1")
    status, _, body = upload(process.address, os.urandom(150_000))
    assert status == 413 and b"larger than the limit" in body
    status, _, body = upload(process.address, b"GIF89a not really")
    assert status == 400 and b"not an image" in body
    status, _, body = upload(process.address, png_header_only(6000, 6000))
    assert status == 400 and b"6000 x 6000 is more than the limit" in body
    status, _, body = upload(process.address, b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    assert status == 400
    assert request(process.address, path="/api/nothing")[0] == 404
    assert process.stop() == 0


def test_a_full_house_answers_503_with_retry_after(server):
    process = server("--max-in-flight", "1", "--queue-seconds", "0.2", "--threads", "8", "--max-megapixels", "20")
    big = encode_file(np.full((4000, 4000, 3), 90, np.uint8))  # a small file, 16 megapixels: ~0.2 s to decode
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: upload(process.address, big), range(8)))
    statuses = sorted(status for status, _, _ in answers)
    assert 200 in statuses and 503 in statuses and set(statuses) <= {200, 503}, statuses
    busy = next(headers for status, headers, _ in answers if status == 503)
    assert busy["Retry-After"] == "2"
    assert process.stop() == 0


@pytest.mark.slow
def test_500_mixed_requests_at_concurrency_16(server):
    process = server("--threads", "8", "--max-megapixels", "1")
    pictures = [picture(i) for i in range(len(SCENES))]
    alone = [upload(process.address, p)[2] for p in pictures]  # one at a time: the reference answers
    bomb = png_header_only(6000, 6000)
    kinds = ["caption"] * 6 + ["health", "bad", "bomb", "page"]

    def one(i):
        kind = kinds[i % len(kinds)]
        if kind == "caption":
            status, _, body = upload(process.address, pictures[i % len(pictures)])
            return kind, status, body == alone[i % len(pictures)]
        if kind == "health":
            return kind, request(process.address)[0], True
        if kind == "bad":
            return kind, upload(process.address, b"not an image")[0], True
        if kind == "bomb":
            return kind, upload(process.address, bomb)[0], True
        return kind, request(process.address, path="/")[0], True

    rss_before = process.rss_kb()
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(500)))
    elapsed = time.perf_counter() - started
    rss_after = process.rss_kb()
    expected = {"caption": 200, "health": 200, "bad": 400, "bomb": 400, "page": 200}
    assert [r for r in results if r[1] >= 500] == []
    assert all(status == expected[kind] for kind, status, _ in results)
    assert all(same for _, _, same in results)  # captions identical to the single-threaded ones
    print(f"\n500 mixed requests at concurrency 16: {500 / elapsed:.1f} requests/s, 0 x 5xx; RSS "
          f"{rss_before / 1024:.0f} -> {rss_after / 1024:.0f} MB (+{(rss_after - rss_before) / 1024:.1f} MB), "
          f"peak {process.rss_kb('VmHWM') / 1024:.0f} MB")
    assert rss_after - rss_before < 200 * 1024
    assert process.stop() == 0
