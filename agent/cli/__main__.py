"""`python -m agent.cli …`, as `woobrevo-agent …`."""

import sys

from agent.cli.main import main

sys.exit(main())
