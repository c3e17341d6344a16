"""``python -m aopay_async``: the same command line as ``aopay-async``."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main(prog="python -m aopay_async"))
