"""The rok demo: example agent handlers, their policy rules, and a runner that shows it all."""
