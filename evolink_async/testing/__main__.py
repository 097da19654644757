"""``python -m evolink_async.testing [--port 8080] [knobs]``: serve a simulator until Ctrl-C."""

import sys

from .cli import main

__all__: list[str] = []

if __name__ == "__main__":
    sys.exit(main())
