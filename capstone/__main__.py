"""Show and Tell image captioning: a CNN embeds an image, an LSTM writes its caption.

Start with ``demo`` (the whole pipeline offline, on synthetic pictures of shapes), then
``caption`` images with the run it made; for your own data: ``embed`` images, ``split`` the
embeddings, ``train`` a decoder, ``evaluate`` it, ``serve`` it as a web page. Every command
has ``--help``, and its options may come before or after its file names. Bad input is one line
``error: ...`` on stderr and exit status 2.
"""

import argparse
import errno
import importlib
import sys

from capstone.commands import COMMANDS
from capstone.errors import CapstoneError


def build_parser(chosen=None):
    """The parser of every command; only ``chosen`` gets its arguments (its module imports TensorFlow).

    Returns (parser, the chosen command's sub-parser or None)."""
    parser = argparse.ArgumentParser(prog="python -m capstone", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     title="commands, in the order you will use them")
    chosen_parser = None
    for name, (module_name, help_text) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(module_name)
            module.add_arguments(sub)
            sub.set_defaults(run=module.run)
            chosen_parser = sub
    return parser, chosen_parser

# Out of space, over quota, file too large, permission denied, read-only file system.
DISK_ERRNOS = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EACCES, errno.EPERM,
               errno.EROFS}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    chosen = argv[0] if argv and argv[0] in COMMANDS else None
    if chosen:
        from capstone.support.quiet import quiet_tensorflow

        quiet_tensorflow()  # before the command's module imports it: no start-up noise
    parser, command_parser = build_parser(chosen)
    # Intermixed: ``caption RUN --beam 3 a.jpg b.jpg`` works as well as ``caption RUN a.jpg b.jpg --beam 3``.
    args = command_parser.parse_intermixed_args(argv[1:]) if command_parser else parser.parse_args(argv)
    try:
        return args.run(args) or 0
    except CapstoneError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a write no command turned into a CapstoneError: disk full, read-only
        from capstone.support.disk import disk_error

        if error.errno not in DISK_ERRNOS:
            raise
        print(f"error: {disk_error(error.filename or 'a file', error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: a 'train' run continues from its last finished epoch when started again", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
