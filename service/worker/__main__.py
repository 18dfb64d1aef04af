"""`python -m service.worker --app module:object ...` is `rok worker ...`."""

import sys

from service.worker.cli import main

raise SystemExit(main(["worker", *sys.argv[1:]]))
