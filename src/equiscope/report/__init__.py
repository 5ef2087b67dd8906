"""Write an audit report: ``report.json``, ``report.md`` (the table a person reads
first) and PNG figures, into a staging folder moved into place at the end."""

from ._writer import FIGURES, markdown_summary, write_report

__all__ = ["FIGURES", "markdown_summary", "write_report"]
