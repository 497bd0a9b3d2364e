"""`python -m tracedb` is the `tracedb` command."""

import sys

from tracedb.cli import main

sys.exit(main())
