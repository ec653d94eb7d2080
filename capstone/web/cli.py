"""``python -m capstone serve``: the caption service for one run directory.

By default on waitress (``capstone.web.server``): worker threads sharing one model, a connection
limit, a timeout for silent connections, an access log, and a clean stop on SIGTERM. ``--dev``
runs Flask's own development server instead.
"""

import ipaddress
import logging
import sys

from capstone.config import add_ensemble_argument, add_no_repeat_ngram_argument, ensemble_from, no_repeat_ngram_from
from capstone.errors import CapstoneError
from capstone.final_model import FinalModel
from capstone.support.precision import add_precision_argument, resolve
from capstone.web.app import create_app
from capstone.web.captioner import (DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_PIXELS, DEFAULT_MAX_UPLOAD_BYTES,
                                    DEFAULT_QUEUE_SECONDS, MEGABYTE, Captioner, model_id)
from capstone.web.search_index import load_or_build


def add_arguments(p):
    p.add_argument("run_dir", help="run directory written by 'train' (its image encoder is loaded too)")
    p.add_argument("--index", metavar="IMAGE_DIR", help="caption the images of this folder and search them by words")
    p.add_argument("--index-file", help="where to save the index (default IMAGE_DIR/.capstone_index.json)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this computer only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--allow-private-urls", action="store_true",
                   help="also fetch image URLs on loopback/private networks (only if you alone use the server)")
    p.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_BYTES / MEGABYTE,
                   help="largest upload or fetched image in MB (default 10)")
    p.add_argument("--max-megapixels", type=float, default=DEFAULT_MAX_PIXELS / 1e6,
                   help=f"largest picture, by its header, in millions of pixels (default {DEFAULT_MAX_PIXELS / 1e6:g})")
    p.add_argument("--beam", type=int, default=3, help="beam size of the beam-search captions (default 3)")
    p.add_argument("--max-len", type=int, default=20, help="most words per caption (default 20)")
    add_no_repeat_ngram_argument(p)
    add_ensemble_argument(p)
    add_precision_argument(p)
    p.add_argument("--dev", action="store_true", help="Flask's development server instead of waitress")
    p.add_argument("--threads", type=int, default=8, help="worker threads (default 8)")
    p.add_argument("--connection-limit", type=int, default=100,
                   help="open connections at most; more wait in the kernel's queue (default 100)")
    p.add_argument("--channel-timeout", type=int, default=30,
                   help="close a connection silent for this many seconds, half-sent headers included (default 30)")
    p.add_argument("--max-in-flight", type=int, default=DEFAULT_MAX_IN_FLIGHT,
                   help=f"images decoded and captioned at once (default {DEFAULT_MAX_IN_FLIGHT})")
    p.add_argument("--queue-seconds", type=float, default=DEFAULT_QUEUE_SECONDS,
                   help=f"wait this long for a free slot, then answer 503 (default {DEFAULT_QUEUE_SECONDS:g})")
    p.add_argument("--grace", type=float, default=30.0,
                   help="on SIGTERM, let requests in flight finish for up to this many seconds (default 30)")


def _is_loopback(host):
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def check_args(args):
    if args.beam < 1 or args.max_len < 1 or args.max_upload_mb <= 0 or args.max_megapixels <= 0:
        raise CapstoneError("--beam and --max-len must be at least 1, --max-upload-mb and --max-megapixels above 0")
    if min(args.threads, args.connection_limit, args.channel_timeout, args.max_in_flight) < 1:
        raise CapstoneError("--threads, --connection-limit, --channel-timeout and --max-in-flight must be at least 1")
    if args.queue_seconds < 0 or args.grace < 0:
        raise CapstoneError("--queue-seconds and --grace must be 0 or more")
    args.no_repeat_ngram, args.ensemble = no_repeat_ngram_from(args), ensemble_from(args)


def run(args):
    check_args(args)
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    model = FinalModel.load(args.run_dir, with_encoder=True, precision=resolve(args.precision, path="caption"),
                            ensemble=args.ensemble)
    captioner = Captioner(model, args.beam, args.max_len,
                          max_pixels=int(args.max_megapixels * 1e6), max_in_flight=args.max_in_flight,
                          queue_seconds=args.queue_seconds, no_repeat_ngram=args.no_repeat_ngram)
    index = None
    if args.index:
        log(f"indexing {args.index} ...")
        index = load_or_build(args.index, captioner.captions_for_file,
                              # without the rule or an ensemble the id is what it was before these flags: saved
                              # indexes stay valid
                              model_id(args.run_dir, beam=args.beam, max_len=args.max_len,
                                       **({"no_repeat_ngram": args.no_repeat_ngram} if args.no_repeat_ngram else {}),
                                       **({"ensemble": [model_id(m) for m in args.ensemble]} if args.ensemble else {})),
                              index_path=args.index_file, log=log)
    app = create_app(captioner, index, max_upload_bytes=int(args.max_upload_mb * MEGABYTE),
                     allow_private_urls=args.allow_private_urls)
    if not _is_loopback(args.host):
        log(f"warning: listening on {args.host}: anyone who can reach this computer can use the service")
    if args.dev:
        log(f"caption service (Flask development server) on http://{args.host}:{args.port}/  (Ctrl+C stops)")
        app.run(host=args.host, port=args.port, threaded=True)  # threaded: one model, many requests at once
        return
    from capstone.web.server import make_server, run_until_stopped

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    server = make_server(app, args.host, args.port, threads=args.threads, connection_limit=args.connection_limit,
                         channel_timeout=args.channel_timeout)
    log(f"caption service on http://{args.host}:{server.effective_port}/  (waitress, {args.threads} threads; "
        f"SIGTERM or Ctrl+C stops)")
    run_until_stopped(server, grace=args.grace, log=log)
