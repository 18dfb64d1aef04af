"""`rok demo`: the command's parser lives with the demo runner."""

from service.demo.runner import register, run_demo_command

__all__ = ["register", "run_demo_command"]
