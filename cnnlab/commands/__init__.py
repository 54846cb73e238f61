"""One module per ``cnnlab`` verb; each defines ``register(subparsers)``."""

import argparse


def add_verb(subparsers, name: str, *, help: str, example: str, description: str | None = None) -> argparse.ArgumentParser:
    """Add a verb's parser with its one-line help and an example shown by ``--help``."""
    return subparsers.add_parser(
        name,
        help=help,
        description=description or help,
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
