"""DTQ's benchmark harness (``dtq bench``); see bench/README.md."""
