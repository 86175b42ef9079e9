"""`python -m tests.fakes.brevo`: see cli.py."""

import sys

from tests.fakes.brevo.cli import main

if __name__ == "__main__":
    sys.exit(main())
