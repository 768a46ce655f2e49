"""The service report: metrics for a period as charts and tables, in one HTML file.

``journey report`` writes it as a single self-contained file (CSS inline, charts as inline
SVG, nothing loaded from anywhere); the console's metrics page shows the same sections. The
numbers come from :mod:`journey.analytics` — this package only lays them out
(:mod:`journey.charts` draws them).
"""

from journey.report.figures import (
    Distribution,
    ReportInput,
    render_report,
    render_sections,
    report_css,
)

__all__ = ["Distribution", "ReportInput", "render_report", "render_sections", "report_css"]
