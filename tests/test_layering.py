"""The package's layers: serving imports no data or training stack, and the Hub-bound model files import only
torch, torchaudio, numpy, transformers (and huggingface_hub's `strict` dataclasses, as transformers' own configs) and
each other."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gtzan_hf" / "models"
HEAVY = ("datasets", "sklearn", "pyarrow", "evaluate", "gtzan_hf.training.trainer", "gtzan_hf.data")


@pytest.mark.parametrize(
    "module",
    ["gtzan_hf.inference.songs", "gtzan_hf.serving.forms", "gtzan_hf.inference.plots", "gtzan_hf.serving.demo"],
)
def test_serving_imports_no_data_or_training_stack(module):
    names = "{m if m.startswith('gtzan_hf') else m.split('.')[0] for m in sys.modules}"
    code = f"import sys, {module}; print(sorted({names}))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = set(eval(done.stdout.strip().splitlines()[-1]))
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


@pytest.mark.parametrize(
    "path",
    sorted(PACKAGE.glob("configuration_*.py"))
    + sorted(PACKAGE.glob("modeling_*.py"))
    + sorted(PACKAGE.glob("feature_extraction_*.py")),
    ids=lambda path: path.name,
)
def test_hub_bound_model_files_import_only_the_model_stack(path):
    standard_library = {"dataclasses", "collections", "typing", "math", "warnings"}
    allowed = {"torch", "torchaudio", "numpy", "transformers"} | standard_library
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots = {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.module == "huggingface_hub.dataclasses":  # `strict` configs, as transformers 5's own
                continue
            if node.level:  # a relative import: another model file
                assert (PACKAGE / f"{node.module}.py").name.startswith(
                    ("configuration_", "modeling_", "feature_extraction_")
                ), node.module
                continue
            roots = {node.module.split(".")[0]}
        else:
            continue
        assert roots <= allowed, (path.name, roots - allowed)
