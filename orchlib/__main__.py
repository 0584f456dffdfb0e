"""Entry point of ``python -m orchlib``: see :mod:`orchlib.cli`."""

from orchlib.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
