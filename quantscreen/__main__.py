"""`quantscreen [pytest options]` (or `python -m quantscreen`): the shipped screens on the checkpoints you name.

The same as `pytest --pyargs quantscreen.screens [options]` run where you stand: relative paths are yours, and the
outputs land in ./screen-results unless --output-dir says otherwise. Add your own screen files as further arguments.
"""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    import pytest

    args = list(sys.argv[1:] if argv is None else argv)
    # no:cacheprovider: the rootdir of an installed package is site-packages, which is no place for a .pytest_cache
    return int(pytest.main(["--pyargs", "quantscreen.screens", "-p", "no:cacheprovider", *args]))


if __name__ == "__main__":
    sys.exit(main())
