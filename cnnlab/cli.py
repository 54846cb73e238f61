"""The ``cnnlab`` command.

Each verb lives in its own module under :mod:`cnnlab.commands` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (taking the parsed arguments and
returning an exit code). Errors a user can cause print one line and exit non-zero; set
``CNNLAB_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import warnings

from . import __version__
from .errors import CnnlabError, CnnlabWarning

EPILOG = """examples:
  cnnlab train lenet5 --data fashion-mnist --epochs 10
  cnnlab summary alexnet_original --input 3x227x227
  cnnlab explain conv
  cnnlab list
Run 'cnnlab VERB --help' for the options and an example of each verb."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cnnlab",
        description="Convolutional neural networks, runnable and inspectable.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"cnnlab {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="VERB")
    from . import commands

    for module_info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands.__name__}.{module_info.name}")
        module.register(subparsers)
    return parser


def one_line_warnings(command: str):
    """A ``warnings.showwarning`` that prints cnnlab's own warnings as one line naming the verb."""
    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, CnnlabWarning):
            print(f"cnnlab {command}: warning: {message}", file=file or sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    return show


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        with warnings.catch_warnings():
            warnings.showwarning = one_line_warnings(args.command)
            warnings.simplefilter("always", CnnlabWarning)
            return int(args.func(args) or 0)
    except BrokenPipeError:  # output piped into `head` and the like: not an error of ours
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("cnnlab: interrupted", file=sys.stderr)
        return 130
    except (CnnlabError, ValueError, OSError) as error:
        if os.environ.get("CNNLAB_DEBUG"):
            raise
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"cnnlab {args.command}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
