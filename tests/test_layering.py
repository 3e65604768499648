"""The package's layers, enforced: every module imports only from its own layer and those it may build on
(`ALLOWED`), and only the third-party packages its layer may use; the Hub-bound model files import only the model
stack and each other; serving loads no data, training or command-line stack at run time."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gtzan_hf"
MODEL_STACK = {"torch", "torchaudio", "numpy", "transformers", "huggingface_hub", "safetensors", "filelock"}
# layer -> (the layers it may import, the third-party packages it may import); the top-level `gtzan_hf/__init__.py`
# counts as the model layer. Lower layers never import higher ones: model <- inference <- data <- training <- reports
# <- commands, with serving beside data and training (nothing imports it). `errors` (the user-error class) is a leaf
# every layer may import; it imports nothing.
ALLOWED = {
    "errors": (set(), set()),
    "models": ({"errors", "models"}, MODEL_STACK),
    "inference": (
        {"errors", "models", "inference", "recipes"},
        MODEL_STACK | {"soundfile", "torchcodec", "matplotlib"},
    ),
    "recipes": ({"errors", "inference", "recipes"}, {"numpy"}),
    "serving": (
        {"errors", "models", "inference", "recipes", "serving"},
        MODEL_STACK | {"soundfile", "onnxruntime", "torchao"},
    ),
    "metrics": ({"errors", "inference", "recipes", "metrics"}, {"numpy", "datasets", "evaluate", "sklearn"}),
    "data": (
        {"errors", "models", "inference", "recipes", "data"},
        MODEL_STACK | {"soundfile", "datasets", "pyarrow", "sklearn", "audiomentations", "xxhash"},
    ),
    "training": (
        {"errors", "models", "inference", "recipes", "metrics", "data", "training"},
        MODEL_STACK | {"sklearn", "threadpoolctl"},
    ),
    "reports": (
        {"errors", "models", "inference", "recipes", "metrics", "data", "reports"},
        MODEL_STACK | {"matplotlib", "sklearn"},
    ),
    "commands": (
        {"errors", "models", "inference", "recipes", "metrics", "data", "training", "reports", "commands"},
        MODEL_STACK | {"datasets", "sklearn", "yaml"},
    ),
}
HUB_BOUND = ("configuration_", "modeling_", "feature_extraction_")


def layer_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0] if len(parts) > 1 or parts[0] in ALLOWED else "models"


def imported_modules(code: str, path: Path) -> list[tuple[int, str]]:
    """`(line, absolute module)` of every import of `code` standing at `path`, function-level (lazy) ones
    included."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    else:
        package = package.removesuffix(".__init__")
    modules = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            modules += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                modules.append((node.lineno, ".".join([*base, *([node.module] if node.module else [])])))
            else:
                modules.append((node.lineno, node.module))
    return modules


def violations(code: str, path: Path) -> list[str]:
    """The imports of `code`, standing at `path`, that its layer may not make."""
    layers, packages = ALLOWED[layer_of(path)]
    found = []
    for line, module in imported_modules(code, path):
        root, _, rest = module.partition(".")
        if root == "gtzan_hf":
            target = rest.split(".")[0] if rest else "models"
            target = target if target in ALLOWED else "models"  # gtzan_hf/__init__.py re-exports the model layer
            if target not in layers:
                found.append(f"{path.relative_to(PACKAGE)}:{line} imports {module} ({target} layer)")
        elif root not in sys.stdlib_module_names and root not in packages:
            found.append(f"{path.relative_to(PACKAGE)}:{line} imports {root}")
    return found


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda path: str(path.relative_to(PACKAGE)))
def test_each_module_imports_only_its_own_and_lower_layers(path):
    assert violations(path.read_text(), path) == []


def test_an_upward_import_is_caught():
    """The check itself: an inference module importing the command line, YAML or datasets would fail."""
    code = "from ..commands.cli import run\nimport yaml\n\ndef f():\n    from datasets import Dataset\n"
    found = violations(code, PACKAGE / "inference" / "songs.py")
    assert found == [
        "inference/songs.py:1 imports gtzan_hf.commands.cli (commands layer)",
        "inference/songs.py:2 imports yaml",
        "inference/songs.py:5 imports datasets",
    ]


@pytest.mark.parametrize(
    "path",
    [path for path in sorted((PACKAGE / "models").glob("*.py")) if path.name.startswith(HUB_BOUND)],
    ids=lambda path: path.name,
)
def test_hub_bound_model_files_import_only_the_model_stack(path):
    """They travel to the Hub as remote code: torch, torchaudio, numpy, transformers (and huggingface_hub's `strict`
    dataclasses, as transformers' own configs) and each other."""
    allowed = {"torch", "torchaudio", "numpy", "transformers"}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots = {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.module == "huggingface_hub.dataclasses":
                continue
            if node.level:  # a relative import: another model file
                assert node.module.startswith(HUB_BOUND), node.module
                continue
            roots = {node.module.split(".")[0]}
        else:
            continue
        assert roots <= allowed | set(sys.stdlib_module_names), (path.name, roots - allowed)


@pytest.mark.parametrize("module", ["gtzan_hf.inference", "gtzan_hf.serving.forms", "gtzan_hf.serving.demo"])
def test_serving_loads_no_data_training_or_command_line_stack(module):
    # (the static check above keeps our own YAML reading in the commands; huggingface_hub loads yaml itself)
    heavy = {"datasets", "sklearn", "pyarrow", "evaluate", "gtzan_hf.data", "gtzan_hf.training"}
    heavy |= {"gtzan_hf.commands", "gtzan_hf.reports", "gtzan_hf.metrics"}
    names = "{m if m.startswith('gtzan_hf') else m.split('.')[0] for m in sys.modules}"
    code = f"import sys, {module}; print(sorted({names}))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = set(eval(done.stdout.strip().splitlines()[-1]))
    assert not loaded & heavy, sorted(loaded & heavy)
