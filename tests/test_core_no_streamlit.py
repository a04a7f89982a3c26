"""core is a plain library: only the page glue, the package core/ui/, may import Streamlit (DESIGN.md)."""
import ast
from pathlib import Path

CORE = Path(__file__).resolve().parent.parent / "core"
GLUE = CORE / "ui"


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_page_glue_imports_streamlit():
    offenders = [str(p.relative_to(CORE)) for p in sorted(CORE.rglob("*.py"))
                 if GLUE not in p.parents and "streamlit" in _imports(p)]
    assert offenders == []


def test_the_check_sees_an_import():
    assert "streamlit" in _imports(GLUE / "url.py")
    assert GLUE not in (CORE / "data.py").parents and GLUE in (GLUE / "url.py").parents
