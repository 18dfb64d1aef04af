"""Contract tests: the committed OpenAPI contract, fuzzed against the live app."""
