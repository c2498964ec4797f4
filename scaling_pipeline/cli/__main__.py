"""``python -m scaling_pipeline.cli``: the ``scaling-pipeline`` command."""

import sys

from . import main

sys.exit(main())
