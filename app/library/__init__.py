"""The process library in the browser: drafts, validation, scenarios, deployment,
version diffs and migration of running cases (process owners and administrators)."""
