"""The bundled `prometheus` plugin (Kong 3.9's, plus LLM metrics): handler.py registers it.

families.py declares every metric; handler.py records per request into store.py (per worker, flushed to a file
each second); exporter.py serves the node's sum as `GET /metrics` on the Admin API and on status_listen,
written by exposition.py. docs/metrics.md lists the metrics.
"""

from servegate.plugins.prometheus import handler as handler

__all__ = ["handler"]
