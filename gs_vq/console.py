"""What every command-line tool shares: a GsVqError becomes one line ``error: ...`` and exit 2,
argparse errors too, and ``--quiet`` silences the libraries' progress bars. Library packages
(export) import it for their ``python -m`` entry points; :mod:`gs_vq.cli` holds the front ends
themselves."""

import argparse
import os
import sys
from functools import wraps

from .errors import GsVqError


def guarded(main):
    """Run ``main``; a :class:`GsVqError` (or Ctrl-C) becomes one line on stderr and exit 2."""

    @wraps(main)
    def wrapper(argv=None):
        try:
            return main(argv)
        except GsVqError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            sys.exit(2)

    return wrapper


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad command line is one line ``error: ...`` on stderr and exit 2 (no usage
    block), as every other bad input is; ``-h`` still prints the full help."""

    def error(self, message: str):
        print(f"error: {message} (see {self.prog} -h)", file=sys.stderr)
        sys.exit(2)


def quiet_libraries() -> None:
    """For ``--quiet``: no progress bars from the libraries gs-vq loads (the text encoder's
    "Loading weights" bar of transformers / huggingface_hub)."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
