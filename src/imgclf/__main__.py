"""``python -m imgclf ...``: the same command line as the ``imgclf`` script."""
import sys

from imgclf.cli import main

sys.exit(main())
