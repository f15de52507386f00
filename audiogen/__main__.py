"""`python -m audiogen ...` is the `audiogen` command."""

import sys

from audiogen.cli import main

sys.exit(main())
