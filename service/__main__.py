"""`python -m service …` is the `rok` command."""

from service.cli import main

raise SystemExit(main())
