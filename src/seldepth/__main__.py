"""``python -m seldepth``: the ``seldepth`` command."""

from seldepth.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
