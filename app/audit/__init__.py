"""Auditors: verify, replay and export case histories (issue 6)."""
