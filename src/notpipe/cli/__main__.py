"""``python -m notpipe.cli``: the ``notpipe`` command without the venv's ``bin/`` on PATH."""

import sys

from notpipe.cli import main

sys.exit(main())
