"""``python -m capstone serve``: the caption service for one run directory."""

import ipaddress
import sys

from capstone.errors import CapstoneError
from capstone.final_model import FinalModel
from capstone.web.app import create_app
from capstone.web.captioner import DEFAULT_MAX_UPLOAD_BYTES, MEGABYTE, Captioner, model_id
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
    p.add_argument("--beam", type=int, default=3, help="beam size of the beam-search captions (default 3)")
    p.add_argument("--max-len", type=int, default=20, help="most words per caption (default 20)")


def _is_loopback(host):
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def run(args):
    if args.beam < 1 or args.max_len < 1 or args.max_upload_mb <= 0:
        raise CapstoneError("--beam and --max-len must be at least 1, --max-upload-mb above 0")
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    captioner = Captioner(FinalModel.load(args.run_dir, with_encoder=True), args.beam, args.max_len)
    index = None
    if args.index:
        log(f"indexing {args.index} ...")
        index = load_or_build(args.index, captioner.captions_for_file,
                              model_id(args.run_dir, beam=args.beam, max_len=args.max_len),
                              index_path=args.index_file, log=log)
    app = create_app(captioner, index, max_upload_bytes=int(args.max_upload_mb * MEGABYTE),
                     allow_private_urls=args.allow_private_urls)
    if not _is_loopback(args.host):
        log(f"warning: listening on {args.host}: anyone who can reach this computer can use the service")
    log(f"caption service on http://{args.host}:{args.port}/  (Ctrl+C stops)")
    app.run(host=args.host, port=args.port, threaded=True)  # threaded: one model, many requests at once
