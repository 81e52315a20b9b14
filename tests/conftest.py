from pathlib import Path

import pytest

_MARK_BY_FOLDER = {"integration": pytest.mark.integration, "e2e": pytest.mark.e2e}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        folder = Path(str(item.fspath)).parent.name
        for name, mark in _MARK_BY_FOLDER.items():
            if name in Path(str(item.fspath)).parts or folder == name:
                item.add_marker(mark)
