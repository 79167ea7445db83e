"""``python -m callrecords …``: the same as the installed ``callrecords`` command."""

import sys

from callrecords.cli import main

sys.exit(main(prog="python -m callrecords"))
