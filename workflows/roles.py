"""The role catalogue: which roles a BPMN lane may name."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping


@dataclass(frozen=True)
class Role:
    identifier: str
    labels: Mapping[str, str]  # language code -> label, e.g. {"zh": "网格员", "en": "Grid member"}

    def label(self, language: str = "zh") -> str:
        return self.labels.get(language) or self.labels.get("zh") or self.identifier


class RoleCatalogue:
    """Resolves lane names to role identifiers.

    A lane may be named by the role identifier (``grid_member``) or by any of
    its labels (``网格员``), so that diagrams read naturally in Chinese.
    """

    def __init__(self, roles: Mapping[str, Role]):
        self.roles = dict(roles)
        self._by_name: dict[str, str] = {}
        for identifier, role in self.roles.items():
            self._by_name[identifier] = identifier
            for label in role.labels.values():
                self._by_name.setdefault(label.strip(), identifier)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Mapping[str, str]]) -> "RoleCatalogue":
        return cls({key: Role(key, dict(labels)) for key, labels in data.items()})

    @classmethod
    def from_file(cls, path: str | Path) -> "RoleCatalogue":
        document = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls.from_mapping(document["roles"])

    def resolve(self, lane_name: str | None) -> str | None:
        """Role identifier for a lane name, or None when the lane names no known role."""
        if lane_name is None:
            return None
        return self._by_name.get(lane_name.strip())

    def __contains__(self, identifier: str) -> bool:
        return identifier in self.roles

    def identifiers(self) -> list[str]:
        return sorted(self.roles)
