"""Cross-process, crash and resource-exhaustion tests (real processes, files, signals)."""
