"""Write an audit report: ``report.json``, ``report.md`` (the table a person reads
first, with units, verdicts and advice) and PNG figures, into a staging folder moved
into place at the end."""

from ._writer import (
    ACCURACY_SHARE,
    FIGURES,
    FLOOR_FACTOR,
    RMS_SHARE,
    advice,
    annotated,
    histogram_bins,
    judge,
    markdown_summary,
    symmetrize_command,
    terminal_summary,
    verdict_rule,
    write_report,
)

__all__ = [
    "ACCURACY_SHARE",
    "FIGURES",
    "FLOOR_FACTOR",
    "RMS_SHARE",
    "advice",
    "annotated",
    "histogram_bins",
    "judge",
    "markdown_summary",
    "symmetrize_command",
    "terminal_summary",
    "verdict_rule",
    "write_report",
]
