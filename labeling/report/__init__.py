"""Label quality report: streaming statistics, plots and overlay galleries of label shards.

``build_report(ReportConfig(labels=DIR, out=REPORT_DIR))`` writes REPORT_DIR/summary.json
(every figure, machine-readable) and REPORT_DIR/report.html (one self-contained page).
Memory stays bounded by bins, categories, classes and gallery sizes, not by rows.
"""

from labeling.report.build import ReportConfig, build_report

__all__ = ["ReportConfig", "build_report"]
