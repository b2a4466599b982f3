"""The house rules of ../shared/ARCHITECTURE.md, checked: layers, module size, imports, cycles.

Each test reports every offender at once, so one failing run lists all the work left.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import grimp
import pytest

import framework

REPO: Final = Path(__file__).resolve().parents[1]
#: The packages the rules cover (scenarios, tests and benchmarks are not modules of the product).
PACKAGES: Final = ("framework", "analysis", "fuzz")
#: A module longer than this holds more than one concept (STYLE.md: "a few hundred lines").
MAX_MODULE_LINES: Final = 600

#: Imports allowed inside a function, as (module file, imported module) pairs.  Only the CLI
#: has any: `xen970 validate` imports the scenario language alone and answers in ~0.4 s, while
#: the simulation (unicorn, simpy) and analysis (pandas, pyarrow) would triple that; `run`
#: imports them when it needs them.  This is start-up latency, not a cycle being dodged:
#: neither the simulation nor analysis imports the CLI.
LAZY_IMPORTS: Final = frozenset(
    {
        ("framework/cli.py", "framework.simulation"),
        ("framework/cli.py", "analysis.run"),
        ("framework/cli_runs.py", "analysis.run"),
        ("framework/cli.py", "analysis.summary"),
        ("framework/cli.py", "analysis.io"),
        ("framework/cli.py", "analysis.expectations"),
        ("framework/cli_runs.py", "analysis.report_html"),
        ("framework/cli.py", "framework.suite.runner"),
        ("framework/cli.py", "framework.suite.sweep"),
        # xen970 export (issue 17)
        ("framework/cli_runs.py", "analysis.export_perfetto"),
        ("framework/cli_runs.py", "analysis.export_xentrace"),
        # The pytest plugin loads with every pytest run in an environment that has xen970;
        # the simulator comes in only when a scenario item runs.
        ("framework/suite/pytest_plugin.py", "framework.suite.job"),
    }
)


def _modules() -> list[Path]:
    """Every Python module of the product, relative to the repository."""
    return sorted(
        path.relative_to(REPO) for package in PACKAGES for path in (REPO / package).rglob("*.py")
    )


def _graph() -> grimp.ImportGraph:
    """framework's runtime import graph: imports under `if TYPE_CHECKING:` never run."""
    # grimp finds `framework` the way Python does: make sure that is this tree.
    assert Path(framework.__file__).resolve().parent == REPO / "framework"
    return grimp.build_graph("framework", exclude_type_checking_imports=True, cache_dir=None)


def test_import_linter_contracts_hold() -> None:
    """pyproject.toml's import-linter contracts (the arrows of the house plan) are kept."""
    # The console script sits next to the interpreter of the venv the project is installed in;
    # import-linter has no `python -m` entry point.
    script = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert script is not None, "import-linter is missing: pip install -e '.[test]'"
    done = subprocess.run(
        [script, "--no-cache", "--no-logo", "pyproject.toml"],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        pytest.fail(f"import-linter:\n{done.stdout}{done.stderr}", pytrace=False)


def test_no_module_is_over_the_size_limit() -> None:
    counts = {
        path: len((REPO / path).read_text(encoding="utf-8").splitlines()) for path in _modules()
    }
    over = [f"{path}: {n} lines" for path, n in counts.items() if n > MAX_MODULE_LINES]
    assert not over, f"modules over {MAX_MODULE_LINES} lines:\n" + "\n".join(over)


def _is_docstring(node: ast.stmt) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)


def _is_type_checking_block(node: ast.stmt) -> bool:
    """`if TYPE_CHECKING:` (or `typing.TYPE_CHECKING`): imports for annotations only."""
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported(node: ast.Import | ast.ImportFrom, path: Path) -> list[str]:
    """The absolute names of the modules `node` imports (relative imports resolved)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        package = list(path.parent.parts)  # an __init__.py's package is its own directory
        package = package[: len(package) - (node.level - 1)]
        return [".".join([*package, node.module] if node.module else package)]
    return [node.module or ""]


def _header_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """The imports of the module's header: before its first other top-level statement."""
    for index, node in enumerate(tree.body):
        if index == 0 and _is_docstring(node):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif _is_type_checking_block(node):
            yield from (n for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom)))
        else:
            return


def _misplaced_imports(path: Path) -> list[str]:
    """`path:line: import` for each import outside the module's header, with where it is."""
    tree = ast.parse((REPO / path).read_text(encoding="utf-8"), filename=str(path))
    header = {id(node) for node in _header_imports(tree)}
    found = []
    scopes: list[tuple[ast.AST, str]] = [(tree, "after the first top-level statement")]
    while scopes:
        parent, where = scopes.pop()
        for node in ast.iter_child_nodes(parent):
            inner = where
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                inner = f"inside {node.name}()"
            elif isinstance(node, ast.ClassDef):
                inner = f"in the body of class {node.name}"
            elif isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in header:
                names = _imported(node, path)
                if not all((path.as_posix(), name) in LAZY_IMPORTS for name in names):
                    found.append(f"{path}:{node.lineno}: `{ast.unparse(node)}` {where}")
            scopes.append((node, inner))
    return found


def test_imports_are_at_the_top_of_each_module() -> None:
    """No import inside a function or below the first statement: break cycles, don't hide them."""
    misplaced = [line for path in _modules() for line in _misplaced_imports(path)]
    assert not misplaced, "imports outside a module's header:\n" + "\n".join(sorted(misplaced))


def _cycles(graph: grimp.ImportGraph) -> list[str]:
    """One line per strongly connected set of modules: its members and a shortest cycle."""
    downstream = {m: graph.find_downstream_modules(m) for m in graph.modules}
    lines: list[str] = []
    seen: set[str] = set()
    for module in sorted(graph.modules):
        if module in seen:
            continue
        component = {m for m in downstream[module] if module in downstream[m]}
        if not component:
            continue
        component.add(module)
        seen |= component
        # The shortest way round through `module`: one of its imports back to it.
        chains = [
            chain
            for imported in graph.find_modules_directly_imported_by(module) & component
            if (chain := graph.find_shortest_chain(importer=imported, imported=module))
        ]
        shortest = min(chains, key=lambda chain: (len(chain), chain))
        lines.append(
            f"{len(component)} modules in a cycle: {', '.join(sorted(component))}\n"
            f"  e.g. {' -> '.join((module, *shortest))}"
        )
    return lines


def test_framework_import_graph_has_no_cycles() -> None:
    """No module of framework reaches itself by runtime imports (TYPE_CHECKING ones aside)."""
    cycles = _cycles(_graph())
    assert not cycles, "import cycles in framework:\n" + "\n".join(cycles)
