"""`python -m service.worker --app module:object ...` is `rok worker ...`.

A program, not a module of the library: like the `rok` command it is a
composition root, so it is the one file under service/worker that names the
reference domains (nothing imports it; the package itself depends on no
domain implementation).
"""

import sys

from service.domains.defaults import reference_domains
from service.worker.cli import main

raise SystemExit(main(["worker", *sys.argv[1:]], reference_domains))
