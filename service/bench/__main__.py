"""`python -m service.bench` runs the same command as `rok bench`."""

from service.bench.runner import main

raise SystemExit(main())
