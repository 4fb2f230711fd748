"""MLproject entry point: a thin shim over the ``fmtrain`` command line."""

from fmtrain.cli.app import run

if __name__ == "__main__":
    run()
