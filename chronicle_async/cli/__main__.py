"""``python -m chronicle_async.cli``: the ``chronicle`` command, as the console script runs it."""
import sys

from . import main

sys.exit(main())
