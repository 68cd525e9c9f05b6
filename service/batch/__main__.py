"""``python -m service.batch``: see :mod:`service.batch.cli`."""

import sys

from service.batch.cli import main

if __name__ == "__main__":
    sys.exit(main())
