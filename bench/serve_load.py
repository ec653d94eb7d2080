"""The caption service under load, in its own process on 127.0.0.1 (tests/serve_process.py).

1. Memory: 48 clients upload at once a small PNG (~100 KB) that decodes to 6000 x 6000 pixels.
   "before" = the old limits (40 megapixels allowed, no decode slots: 48 threads decode at once);
   "after"  = today's defaults (24 megapixels: refused from the header) and, to show the slots,
   the 40-megapixel limit with 4 decode slots. Prints the server's peak RSS (VmHWM) for each.
2. Throughput of one worker (--photos): EfficientNet-Lite0 + a decoder of the usual sizes on
   Flickr8k photos, concurrency 4, requests/s and p50/p95: what one worker sustains on this machine.

    python bench/serve_load.py                 # both, ~2 minutes on 2 cores
    python bench/serve_load.py --skip-photos
"""

import argparse
import concurrent.futures
import os
import pathlib
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from test_serve_production import picture, upload  # noqa: E402  (HTTP helpers)


def start(run_dir, tmp, *flags):
    port_file = pathlib.Path(tmp) / f"port{time.monotonic_ns()}"
    log = open(pathlib.Path(tmp) / "server.log", "a")
    process = subprocess.Popen([sys.executable, str(REPO / "tests" / "serve_process.py"), run_dir, str(port_file),
                                *flags], stdout=log, stderr=log)
    while not port_file.exists():
        if process.poll() is not None:
            raise SystemExit(f"server did not start: see {log.name}")
        time.sleep(0.1)
    return process, ("127.0.0.1", int(port_file.read_text()))


def status_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def stop(process):
    process.terminate()
    process.wait(timeout=60)


def memory(run_dir, tmp):
    from serve_support import encode_file
    bomb = encode_file(np.full((6000, 6000, 3), 200, np.uint8))
    print(f"upload: {len(bomb) / 1024:.0f} KB PNG, 6000 x 6000 pixels; 48 at once")
    for label, flags in (("before (40 MP allowed, no slots)", ["--max-megapixels", "40", "--max-in-flight", "48",
                                                             "--threads", "48", "--queue-seconds", "60"]),
                         ("after (defaults: 24 MP limit)", ["--threads", "48"]),
                         ("after (40 MP allowed, 4 slots)", ["--max-megapixels", "40", "--threads", "48",
                                                            "--queue-seconds", "60"])):
        process, address = start(run_dir, tmp, "--tiny", *flags)
        upload(address, picture(0))  # warm up
        base = status_kb(process.pid, "VmRSS")
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(48) as pool:
            statuses = [status for status, _, _ in pool.map(lambda _: upload(address, bomb, "/api/caption"), range(48))]
        seconds = time.perf_counter() - started
        peak = status_kb(process.pid, "VmHWM")
        stop(process)
        counts = {s: statuses.count(s) for s in sorted(set(statuses))}
        print(f"{label:36s} statuses {counts}, {seconds:.1f} s, RSS before {base / 1024:.0f} MB, "
              f"peak {peak / 1024:.0f} MB (+{(peak - base) / 1024:.0f} MB)")


def photos(tmp, count=40, concurrency=4):
    from capstone.config import ModelConfig
    from capstone.support import run_dir as runs
    from synthetic import untrained_run

    folder = REPO.parent / "shared" / "data" / "flickr8k-dev" / "images"
    files = sorted(folder.glob("*.jpg"))[:count]
    if not files:
        print("photos: ../shared/data/flickr8k-dev is absent; skipped")
        return
    run_dir = untrained_run(pathlib.Path(tmp) / "effnet", 8769, ModelConfig(img_embed_size=1280))
    run = runs.load_run(run_dir)
    run.encoder = "efficientnet_lite0"
    runs.save_run(run)
    process, address = start(run_dir, tmp, "--threads", "8")
    data = [f.read_bytes() for f in files]
    upload(address, data[0])
    latencies = []

    def one(i):
        started = time.perf_counter()
        status = upload(address, data[i % len(data)])[0]
        latencies.append(time.perf_counter() - started)
        return status
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        statuses = list(pool.map(one, range(count)))
    seconds = time.perf_counter() - started
    stop(process)
    print(f"one worker, EfficientNet-Lite0 + decoder (vocabulary 8,769, greedy + beam 3 + first words per request), "
          f"{count} Flickr8k photos at concurrency {concurrency}: {count / seconds:.2f} requests/s, "
          f"p50 {np.median(latencies) * 1000:.0f} ms, p95 {np.percentile(latencies, 95) * 1000:.0f} ms, "
          f"non-200: {sum(s != 200 for s in statuses)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-photos", action="store_true")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores")
    from serve_support import trained_run_dir
    with tempfile.TemporaryDirectory() as tmp:
        memory(trained_run_dir(), tmp)
        if not args.skip_photos:
            photos(tmp)


if __name__ == "__main__":
    main()
