"""Residents' public pages: report a problem, follow it by tracking code, confirm the result."""
