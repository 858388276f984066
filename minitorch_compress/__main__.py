"""`python -m minitorch_compress ...`: see `minitorch_compress.cli`."""

import sys

from minitorch_compress.cli import main

sys.exit(main())
