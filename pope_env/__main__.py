"""``python -m pope_env`` runs the CLI."""

import sys

from pope_env.cli import main

sys.exit(main())
