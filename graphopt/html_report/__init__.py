"""The HTML report (``--report-html FILE``): one self-contained page for a whole run, with pictures of what the
pipeline changed in each graph.

:func:`to_html` and :func:`write_html` take a :class:`~graphopt.report.Report`; the pictures need the models to have
been run with ``graph_diff=True`` (``Job.graph_diff``, ``optimize_file(..., graph_diff=True)``), which records the
changed regions, and Graphviz (the ``html`` extra and the ``dot`` program) to draw them. :func:`pictures_unavailable`
says why pictures cannot be drawn here, if they cannot.
"""

from __future__ import annotations

from .page import to_html, write_html
from .pictures import unavailable as pictures_unavailable

__all__ = ["pictures_unavailable", "to_html", "write_html"]
