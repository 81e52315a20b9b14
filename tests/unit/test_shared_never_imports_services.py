"""Dependencies point one way: services use `shared/`, `shared/` never imports a service
(a tool that needs a service's logic calls its HTTP API). Checked on the syntax tree of every
module, so an import inside a function counts too."""

from __future__ import annotations

import ast
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"


def service_imports(source: str, where: str) -> list[str]:
    tree = ast.parse(source, filename=where)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [
            f"{where}:{node.lineno} imports {name}"
            for name in names
            if name == "services" or name.startswith("services.")
        ]
    return found


def test_shared_never_imports_services() -> None:
    modules = sorted(SHARED.rglob("*.py"))
    assert len(modules) > 20, f"no shared/ modules found under {SHARED}"
    offending = [
        line
        for path in modules
        for line in service_imports(path.read_text(), str(path.relative_to(SHARED.parent)))
    ]
    assert not offending, "\n".join(offending)


def test_the_check_sees_an_import_inside_a_function() -> None:
    source = "import json\n\ndef f():\n    from services.training import trainer\n"
    assert service_imports(source, "probe.py") == ["probe.py:4 imports services.training"]
    assert service_imports("import services\nimport servicesx\n", "p.py") == [
        "p.py:1 imports services"
    ]
