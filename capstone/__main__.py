"""Command line: ``python -m capstone {train,caption,...} --help``.

Every command reports bad input as one line ``error: ...`` on stderr and exit status 2.
"""

import argparse
import errno
import importlib
import os
import sys

# Before TensorFlow is imported anywhere: keep its C++ start-up chatter off the terminal.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from capstone.commands import COMMANDS  # noqa: E402
from capstone.errors import CapstoneError  # noqa: E402

# Out of space, over quota, file too large, permission denied, read-only file system.
DISK_ERRNOS = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EACCES, errno.EPERM,
               errno.EROFS}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="python -m capstone", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = next((arg for arg in argv if not arg.startswith("-")), None)
    for name, (module_name, help_text) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        if name == chosen:  # only the command being run is imported (TensorFlow takes seconds to load)
            module = importlib.import_module(module_name)
            module.add_arguments(sub)
            sub.set_defaults(run=module.run)
    args = parser.parse_args(argv)
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
