"""MLproject entry point: a thin shim over the ``fmtrain`` command line."""

from fmtrain.cli import run

if __name__ == "__main__":
    run()
