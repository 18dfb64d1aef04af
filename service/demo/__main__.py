"""`python -m service.demo [--url URL] [--serve]` is `rok demo`."""

from service.demo.runner import main

raise SystemExit(main())
