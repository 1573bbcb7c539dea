"""Governance dashboard: metrics from the case event log, pages, exports (issue 8)."""
