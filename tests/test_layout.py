"""Where code lives: imports point one way (scripts and experiments -> the library model/ -> the task families
data/tasks, a leaf), no file imports itself back through others, and no module or function grows into a
grab bag. Fast: it reads the sources, it runs nothing."""

import ast

from conftest import ROOT

# Who may import whom, by layer. The scripts (the three train_*.py, sample.py, data/make_data.py), the
# experiments and benches, then the notebooks and tests that drive them sit on top; model/ is the library;
# data/tasks is the leaf.
LAYER = {"data.tasks": 0, "model": 1, "experiments": 2, "bench": 2, "scripts": 3, "notebooks": 4, "tests": 5}
MAX_FUNCTION_LINES = 60
# one concern that needs the room (said here, so a new exception is a decision, not a drift)
LONG_MODULES = {"experiments/report.py": "the paper report: its tables, three figures and claims, one document",
                "data/make_data.py": "the generator's splits and their leakage checks, one pipeline",
                "experiments/runner.py": "when runs start and stop (needs, jobs, Ctrl-C, failures) for all launchers"}
MAX_MODULE_LINES = 350


def our_files():
    skip = {".venv", ".git", "runs", "__pycache__", ".pytest_cache"}
    return [p for p in ROOT.rglob("*.py") if not skip & set(p.relative_to(ROOT).parts)]


def module_name(path):
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer_of(module):
    if module.startswith("data.tasks"):
        return "data.tasks"
    top = module.split(".")[0]
    return top if top in LAYER else "scripts"  # train_*.py, sample.py, data.make_data


def imports(path, known):
    """Our modules that `path` imports, anywhere in it (late imports inside functions count too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            while name and name not in known:  # data.tasks.score -> data.tasks
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def graph():
    files = {module_name(p): p for p in our_files()}
    known = set(files)
    return {m: imports(p, known) - {m} for m, p in files.items()}


def test_imports_point_from_scripts_to_the_library_to_the_task_families():
    wrong = []
    for module, deps in graph().items():
        for dep in deps:
            if dep == "model" or module == "model":  # the package's lazy re-exports of gpt and sampler
                continue
            a, b = layer_of(module), layer_of(dep)
            if LAYER[b] > LAYER[a] or (LAYER[a] == LAYER[b] and a != b):
                wrong.append(f"{module} ({a}) imports {dep} ({b})")
    assert not wrong, "imports against the direction:\n" + "\n".join(sorted(wrong))


def test_no_module_imports_itself_back():
    edges = graph()
    state, stack, cycles = {}, [], []

    def visit(m):  # depth-first: a grey node met again closes a cycle
        state[m] = "grey"
        stack.append(m)
        for d in edges.get(m, ()):
            if state.get(d) == "grey":
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = "black"

    for m in sorted(edges):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_checker_catches_a_library_module_that_imports_a_script(tmp_path):
    """The direction test can fail: a model/ module importing experiments is flagged."""
    assert LAYER[layer_of("experiments.plan")] > LAYER[layer_of("model.cli")]
    fake = tmp_path / "bad.py"
    fake.write_text("from experiments.plan import SCENARIOS\n")
    assert imports(fake, {"experiments.plan", "model.cli"}) == {"experiments.plan"}


def test_no_grab_bags_modules_and_functions_stay_small():
    long_functions, long_modules = [], []
    for path in our_files():
        rel = str(path.relative_to(ROOT))
        if rel.startswith("tests/"):
            continue
        source = path.read_text(encoding="utf-8")
        if source.count("\n") > MAX_MODULE_LINES and rel not in LONG_MODULES:
            long_modules.append(f"{rel}: {source.count(chr(10))} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long_functions.append(f"{rel}:{node.lineno} {node.name}() {n} lines")
    assert not long_modules, long_modules
    assert not long_functions, long_functions


def test_library_modules_never_end_the_process():
    """Only the command-line layer (model/cli.py) and the scripts exit; the library raises."""
    exits = []
    for path in (ROOT / "model").glob("*.py"):
        if path.name == "cli.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in ("exit", "_exit") and \
                    isinstance(node.value, ast.Name) and node.value.id in ("sys", "os"):
                exits.append(f"{path.name}:{node.lineno}")
    assert not exits, exits


def test_each_module_says_what_it_owns():
    missing = [str(p.relative_to(ROOT)) for p in (ROOT / "model").glob("*.py") if not ast.get_docstring(
        ast.parse(p.read_text(encoding="utf-8")))]
    assert not missing, missing
