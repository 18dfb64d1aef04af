"""`python -m service.demo [--url URL] [--serve]` is `rok demo`."""

from service.demo.cli import demo

raise SystemExit(demo.main(prog_name="python -m service.demo"))
