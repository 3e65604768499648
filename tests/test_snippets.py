"""The README's usage snippet, run as written (the Hub id replaced by a saved folder) in a fresh process that has no
FFmpeg on its PATH and never imports gtzan_hf."""

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from gtzan_hf.data.synthetic import GTZAN_GENRES

# The README's "Publishing" snippet, verbatim.
PIPELINE_SNIPPET = """\
import soundfile as sf
from transformers import pipeline

classifier = pipeline("audio-classification", model="you/ssast-gtzan", trust_remote_code=True)
samples, sampling_rate = sf.read("song.wav", dtype="float32", always_2d=True)  # WAV, FLAC, OGG, MP3: no FFmpeg
print(classifier({"raw": samples.mean(axis=1), "sampling_rate": sampling_rate}, top_k=3))
"""


def test_the_readme_shows_the_tested_snippet():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert f"```python\n{PIPELINE_SNIPPET}```" in readme


def test_the_pipeline_snippet_runs_without_ffmpeg(tiny_ssast, tmp_path):
    stereo = np.random.default_rng(0).uniform(-0.5, 0.5, (44100 * 3, 2)).astype(np.float32)
    sf.write(tmp_path / "song.wav", stereo, 44100)  # 44.1 kHz stereo: downmixed here, resampled by the pipeline
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["PATH"] = os.path.dirname(sys.executable)  # python only: no ffmpeg, wherever the tests run
    assert shutil.which("ffmpeg", path=env["PATH"]) is None
    code = PIPELINE_SNIPPET.replace('"you/ssast-gtzan"', repr(str(tiny_ssast)))
    code += "import sys\nassert not any(name.startswith('gtzan_hf') for name in sys.modules)\n"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    predictions = ast.literal_eval(done.stdout.strip().splitlines()[-1])
    assert len(predictions) == 3 and {p["label"] for p in predictions} <= set(GTZAN_GENRES)
    assert all(0 <= p["score"] <= 1 for p in predictions)
