"""Administration: grids, people, roles, departments, tokens and CSV import (pages and CLI)."""
