"""The core: no I/O, and nothing else of DTQ imported (errors, settings, clock, ids,
models, validation)."""
