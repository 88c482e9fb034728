"""`python -m edgelite.cli`: the same as the `edgelite` command."""
import sys

from edgelite.cli import main

sys.exit(main())
