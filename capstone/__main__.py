"""Command line: ``python -m capstone {train,caption,...} --help``.

Every command reports bad input as one line ``error: ...`` on stderr and exit status 2.
"""

import argparse
import os
import sys

# Before TensorFlow is imported anywhere: keep its C++ start-up chatter off the terminal.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from capstone.errors import CapstoneError  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m capstone", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from capstone.cli import COMMANDS
    for name, (add_arguments, run, help_text) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        add_arguments(sub)
        sub.set_defaults(run=run)
    args = parser.parse_args(argv)
    try:
        return args.run(args) or 0
    except CapstoneError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: a 'train' run continues from its last finished epoch when started again", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
