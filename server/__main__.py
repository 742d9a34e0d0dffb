"""`python -m deepserve.server ...` is `deepserve serve ...`."""

import sys

from .cli import main

sys.exit(main())
