"""Every Python snippet of the README and docs/ runs as written, its placeholders (a Hub id, a run folder, a song, a
Space) replaced by things made on the spot: the `pipeline` snippet in a fresh process that has no FFmpeg on its PATH
and never imports gtzan_hf, the others in a fresh process each. The Space's `gradio_client` snippet runs against the
page itself in tests/test_space_app.py."""

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from gtzan_hf.data.synthetic import GTZAN_GENRES

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def python_snippets() -> dict[str, str]:
    """`{"page.md:line": code}` of every ```python block of the README and docs/."""
    snippets = {}
    for page in PAGES:
        text = page.read_text()
        for match in re.finditer(r"^```python\n(.*?)^```$", text, re.S | re.M):
            snippets[f"{page.name}:{text[: match.start()].count(chr(10)) + 1}"] = match.group(1)
    return snippets


SNIPPETS = python_snippets()
# what each snippet needs, recognised by what it uses; the gradio_client one runs in tests/test_space_app.py
KINDS = {"pipeline(": "pipeline", "classify_song": "song", "probe_metrics.json": "probes", "gradio_client": "space"}


def kind(code: str) -> str:
    return next(name for marker, name in KINDS.items() if marker in code)


def test_every_snippet_is_one_the_tests_run():
    assert len(SNIPPETS) >= 4 and all(kind(code) for code in SNIPPETS.values())


def _run(code: str, cwd: Path, env: dict | None = None) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture
def song(tmp_path):
    stereo = np.random.default_rng(0).uniform(-0.5, 0.5, (44100 * 16, 2)).astype(np.float32)
    sf.write(tmp_path / "song.wav", stereo, 44100)  # 44.1 kHz stereo: downmixed, resampled
    return tmp_path / "song.wav"


@pytest.mark.parametrize("where", [key for key, code in SNIPPETS.items() if kind(code) == "pipeline"])
def test_the_pipeline_snippet_runs_without_ffmpeg_or_gtzan_hf(where, tiny_ssast, song):
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["PATH"] = os.path.dirname(sys.executable)  # python only: no ffmpeg, wherever the tests run
    assert shutil.which("ffmpeg", path=env["PATH"]) is None
    code = SNIPPETS[where].replace('"you/ssast-gtzan"', repr(str(tiny_ssast)))
    code += "import sys\nassert not any(name.startswith('gtzan_hf') for name in sys.modules)\n"
    predictions = ast.literal_eval(_run(code, song.parent, env).strip().splitlines()[-1])
    assert len(predictions) == 3 and {p["label"] for p in predictions} <= set(GTZAN_GENRES)
    assert all(0 <= p["score"] <= 1 for p in predictions)


@pytest.mark.parametrize("where", [key for key, code in SNIPPETS.items() if kind(code) == "song"])
def test_the_whole_song_snippet_runs(where, tiny_ssast, song):
    out = _run(SNIPPETS[where].replace('"runs/quickstart"', repr(str(tiny_ssast))), song.parent).strip()
    # the label, the top 3, and the starts of the model's recorded 10 s windows of the 16 s song
    assert out.split()[0] in GTZAN_GENRES and out.count(": ") == 3 and out.endswith("[ 0. 10.]"), out


@pytest.mark.parametrize("where", [key for key, code in SNIPPETS.items() if kind(code) == "probes"])
def test_the_layer_choice_snippet_runs(where, tmp_path):
    validation = {"ssast-base-l4": 0.6, "ssast-base-l8": 0.8, "ssast-base-l12": 0.7}
    for name, accuracy in validation.items():
        (tmp_path / "probes" / name).mkdir(parents=True)
        metrics = {"validation": {"song_accuracy": accuracy}, "test": {"song_accuracy": accuracy - 0.05}}
        (tmp_path / "probes" / name / "probe_metrics.json").write_text(json.dumps(metrics))
    assert _run(SNIPPETS[where], tmp_path).strip() == "ssast-base-l8: validation 0.800, test 0.750"


def test_the_model_cards_usage_is_the_docs_pipeline_snippet():
    from gtzan_hf.reports.model_card import USAGE

    (code,) = [code for code in SNIPPETS.values() if kind(code) == "pipeline"]
    assert USAGE.format(model="you/ssast-gtzan") == f"```python\n{code}```"
