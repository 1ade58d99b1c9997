"""`python -m peftbench` is the `peftbench` command."""

import sys

from peftbench.cli import main

sys.exit(main())
