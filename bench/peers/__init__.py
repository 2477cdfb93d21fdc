"""Adapters running the bench scenarios on peer task queues, one module per peer.

These modules run inside the peers' own venv (``.dtq/bench-venv``): they import only the
standard library, ``redis`` and their peer, never DTQ.
"""
