"""The production server: waitress with worker threads around one shared, stateless model.

Why waitress and threads: the model is one finalized TensorFlow graph that any number of threads
may run at once (FinalModel), TensorFlow does its own multi-threading, and a process must not fork
after TensorFlow has started. So one process, N worker threads, and for more throughput more
processes (README "Scale-out"). What bounds the work:

    threads             requests computed at once (waitress workers)
    connection_limit    open connections; past it waitress stops accepting (the kernel backlog queues)
    channel_timeout     seconds a connection may stay silent (half-sent headers included) before it is closed
    Captioner slots     images decoded + captioned at once; past a short wait the answer is 503 + Retry-After

``AccessLog`` writes one line per request (method, path, status, milliseconds) and counts the
requests in flight, so SIGTERM (and Ctrl+C) stop accepting connections, let those requests finish
(up to ``grace`` seconds) and only then close the workers.
"""

import logging
import signal
import threading
import time

LOG = logging.getLogger("capstone.access")


class AccessLog:
    """WSGI middleware: ``GET /healthz 200 1.2 ms`` per request, and the number in flight."""

    def __init__(self, app, log=None):
        self.app = app
        self.log = log or LOG.info
        self.lock = threading.Lock()
        self.in_flight = 0

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        status = ["-"]

        def recording_start_response(line, headers, exc_info=None):
            status[0] = line.split(" ", 1)[0]
            return start_response(line, headers, exc_info) if exc_info else start_response(line, headers)

        with self.lock:
            self.in_flight += 1
        try:
            yield from self.app(environ, recording_start_response)
        finally:
            with self.lock:
                self.in_flight -= 1
            path = environ.get("PATH_INFO", "") + ("?" + environ["QUERY_STRING"] if environ.get("QUERY_STRING") else "")
            self.log(f"{environ.get('REMOTE_ADDR', '-')} {environ.get('REQUEST_METHOD', '-')} {path[:200]} "
                     f"{status[0]} {(time.perf_counter() - started) * 1000:.1f} ms")


def make_server(app, host="127.0.0.1", port=8000, threads=8, connection_limit=100, channel_timeout=30,
                log=None):
    """A waitress server for ``app`` (not started); ``server.access`` is its AccessLog."""
    import waitress.server

    access = AccessLog(app, log)
    server = waitress.server.create_server(
        access, host=host, port=port, threads=threads, connection_limit=connection_limit,
        channel_timeout=channel_timeout, cleanup_interval=max(1, min(30, channel_timeout // 2)),
        ident="capstone", clear_untrusted_proxy_headers=True)
    server.access = access
    return server


def busy(server):
    """True while a request is being computed or an answer is still being sent."""
    if server.access.in_flight:
        return True
    return any(getattr(channel, "requests", None) or getattr(channel, "total_outbufs_len", 0)
               for channel in list(server._map.values()) if channel is not server)


def run_until_stopped(server, grace=30.0, stop=None, log=print):
    """Serve until SIGTERM/SIGINT (or ``stop``, a threading.Event, is set); then drain and close.

    Draining: the listening socket is closed at once (new connections are refused), requests in
    flight finish and their answers are sent, for at most ``grace`` seconds.
    """
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda number, frame: stop.set())
    timeout = server.adj.asyncore_loop_timeout
    while not stop.is_set():
        server.asyncore.loop(timeout=min(timeout, 0.2), map=server._map, count=1)
    log(f"stopping: {server.access.in_flight} request(s) in flight, waiting up to {grace:g} s")
    server.accepting = False
    server.del_channel()
    server.socket.close()
    deadline = time.monotonic() + grace
    while busy(server) and time.monotonic() < deadline:
        server.asyncore.loop(timeout=0.05, map=server._map, count=1)
    server.task_dispatcher.shutdown(cancel_pending=True, timeout=5)
    import waitress.wasyncore
    waitress.wasyncore.close_all(server._map)
    log("stopped")
