"""``python -m hookline`` (and ``torchrun -m hookline``) run the command line."""

import sys

from hookline.cli import main

sys.exit(main())
