"""MLproject entry point: a thin shim over the ``fmtrain`` command line."""

import sys

from fmtrain.cli import main

if __name__ == "__main__":
    sys.exit(main())
