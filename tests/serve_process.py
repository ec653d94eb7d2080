"""A caption server in its own process, for tests and bench/serve_load.py: serve_support's tiny model
(or a run with its own encoder) on waitress, exactly as ``serve`` runs it.

    python tests/serve_process.py RUN_DIR PORT_FILE [--tiny] [--slow-ms N] [serve flags...]

Writes the port it listens on to PORT_FILE once it accepts connections. ``--slow-ms`` makes every
request take N ms longer (to have requests in flight when a test sends SIGTERM).
"""

import argparse
import os
import pathlib
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main():
    from capstone.web import cli
    from capstone.web.app import create_app
    from capstone.web.captioner import Captioner
    from capstone.web.server import make_server, run_until_stopped

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    parser.add_argument("port_file")
    parser.add_argument("--tiny", action="store_true", help="serve_support's tiny encoder, not the run's own")
    parser.add_argument("--slow-ms", type=float, default=0)
    args = parser.parse_args()
    cli.check_args(args)
    if args.tiny:
        from capstone.final_model import FinalModel
        from capstone.support import run_dir as runs
        from serve_support import tiny_encoder
        model = FinalModel(runs.load_run(args.run_dir), encoder=tiny_encoder())
    else:
        from capstone.final_model import FinalModel
        model = FinalModel.load(args.run_dir, with_encoder=True)
    captioner = Captioner(model, args.beam, args.max_len, max_pixels=int(args.max_megapixels * 1e6),
                          max_in_flight=args.max_in_flight, queue_seconds=args.queue_seconds)
    app = create_app(captioner, max_upload_bytes=int(args.max_upload_mb * 2 ** 20))
    if args.slow_ms:
        inner = app.wsgi_app

        def slow(environ, start_response):
            time.sleep(args.slow_ms / 1000)
            return inner(environ, start_response)
        app.wsgi_app = slow
    server = make_server(app, "127.0.0.1", 0, threads=args.threads, connection_limit=args.connection_limit,
                         channel_timeout=args.channel_timeout, log=lambda line: print(line, file=sys.stderr, flush=True))
    pathlib.Path(args.port_file + ".tmp").write_text(str(server.effective_port))
    os.replace(args.port_file + ".tmp", args.port_file)
    run_until_stopped(server, grace=args.grace, log=lambda line: print(line, file=sys.stderr, flush=True))


if __name__ == "__main__":
    main()
