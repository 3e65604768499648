"""What the Gradio Space (`space/app.py`) does behind its page: load the served model once, check and decode a
recording within bounds, classify it by windows and soft voting ([`gtzan_hf.inference.classify_song`]) and lay
out the results. Every problem a visitor can cause or meet is a [`DemoError`] whose message says what to do.

    python -m gtzan_hf.demo space/examples   # (re)write the Space's generated example clips
"""

import argparse
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from .audio import read_audio, samples_problem, to_mono
from .inference import SongPrediction, classify_song, load_classifier
from .serving import choose_serving_form
from .synthetic import synthesize_song
from .windowing import FRAMES_PER_SECOND

logger = logging.getLogger(__name__)

# The project's published GTZAN model (`python scripts/finetune.py --preset ssast-gtzan --push_to_hub ...`).
DEFAULT_MODEL_ID = "gtzan-hf/ssast-gtzan"
MIN_SECONDS = 1.0
# 10 minutes. Measured: a 9.5-minute 48 kHz stereo WAV raises the Space's peak RSS by 0.73 GB, whatever the hop
# (`python scripts/benchmark.py space_load`). Decoding (220 MB of float32), the downmix and the resampling set
# that peak; the filter bank and the windows, worked on by bounded chunks (`gtzan_hf.inference`), stay below it.
MAX_SECONDS = 600.0
# Window of the course project's recipe (the training crop); a model with a shorter input (`max_length` frames) gets
# its own.
WINDOW_SECONDS = 10.0
FORMATS = "WAV, FLAC, OGG or MP3"


class DemoError(Exception):
    """A recording the page cannot classify, or no model to classify it with; the message is shown to the visitor."""


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def load_recording(
    path: str | os.PathLike | None, min_seconds: float = MIN_SECONDS, max_seconds: float = MAX_SECONDS
) -> tuple[np.ndarray, int]:
    """
    Decode an uploaded or recorded file, refusing what cannot be classified with a message that says why.

    The duration is read from the header first, so an over-long file is refused before it is decoded (memory stays
    bounded); files soundfile cannot open go through `read_audio`'s torchcodec fallback and are measured once decoded.

    Returns:
        `(samples, sampling_rate)`, samples float32 of shape `(num_samples, num_channels)`.
    """
    if path is None or str(path) == "":
        raise DemoError(f"No audio: upload a {FORMATS} file or record one with the microphone.")
    name = Path(path).name
    limits = f"between {min_seconds:g} s and {_minutes(max_seconds)} minutes"
    try:
        header_seconds = sf.info(str(path)).duration
    except (sf.LibsndfileError, RuntimeError):
        header_seconds = None  # not a format libsndfile knows: decoding tells
    if header_seconds is not None and header_seconds > max_seconds:
        raise DemoError(f"{name} lasts {_minutes(header_seconds)}: the demo takes recordings {limits}. Trim it.")
    try:
        samples, sampling_rate = read_audio(str(path))
    except Exception as error:  # any decoding failure: the file is not (intact) audio
        # decoders quote the path: the server's upload folder is no business of the visitor's
        reason = str(error).replace(str(path), name)
        raise DemoError(
            f"{name} could not be read as audio ({type(error).__name__}: {reason}). Upload a {FORMATS} file."
        ) from None
    problem = samples_problem(samples, sampling_rate)
    if problem:
        raise DemoError(f"{name} cannot be classified: {problem}. Upload a recording of music, {limits}.")
    seconds = samples.shape[0] / sampling_rate
    if not min_seconds <= seconds <= max_seconds:
        raise DemoError(f"{name} lasts {seconds:.1f} s: the demo takes recordings {limits}.")
    return samples, sampling_rate


def cpu_count() -> int:
    """CPUs this process may use: its affinity, further limited by a cgroup CPU quota (containers, Spaces), where
    `os.cpu_count()` reports the whole host and torch would start more threads than it gets cores."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            count = min(count, max(1, round(int(quota) / int(period))))
    except (OSError, ValueError):
        pass  # no cgroup v2 limit
    return count


@dataclass
class DemoResult:
    """What the page shows for one recording."""

    prediction: SongPrediction
    name: str
    sampling_rate: int
    num_channels: int

    def timeline_rows(self) -> list[list]:
        """One row per window: start and end (s), top genre, its probability."""
        prediction = self.prediction
        return [
            [
                round(float(start), 2),
                round(float(end), 2),
                prediction.label_names[row.argmax()],
                round(float(row.max()), 3),
            ]
            for start, end, row in zip(
                prediction.window_starts, prediction.window_ends, prediction.window_probabilities
            )
        ]

    def summary(self) -> str:
        """One Markdown line: the verdict and what was analysed."""
        prediction = self.prediction
        windows = len(prediction.window_starts)
        channels = "mono" if self.num_channels == 1 else f"{self.num_channels} channels"
        return (
            f"**{prediction.label}** ({100 * prediction.probabilities.max():.0f} %) — {self.name}: "
            f"{prediction.duration:.1f} s, {self.sampling_rate} Hz {channels}, {windows} window"
            f"{'s' if windows > 1 else ''} of {prediction.window_seconds:g} s, soft vote."
        )


class GenreClassifier:
    """
    The page's model: loaded once (`load`), shared by all requests, in the serving form calibration found fastest
    on this machine among `forms` ([`gtzan_hf.serving.choose_serving_form`]). A model that cannot be loaded leaves
    `problem` set, and `classify` retries the load, so a Hub hiccup at start-up does not need a restart. A folder
    whose code is not the package's is refused unless `trust_remote_code`.
    """

    def __init__(self, model_id: str, forms: list[str] | None = None, trust_remote_code: bool = False):
        self.model_id = model_id
        self.forms = forms
        self.trust_remote_code = trust_remote_code
        self.form = self.feature_extractor = None
        self.problem = ""
        self._lock = threading.Lock()

    @property
    def window_seconds(self) -> float:
        """`WINDOW_SECONDS`, or the model's input length where that is shorter (e.g. 5.12 s for 512 frames)."""
        if self.feature_extractor is None:
            return WINDOW_SECONDS
        return min(WINDOW_SECONDS, self.feature_extractor.max_length / FRAMES_PER_SECOND)

    def load(self) -> str:
        """Load the model if not loaded yet; returns the problem (`""` when it is ready)."""
        with self._lock:
            if self.form is None:
                try:
                    model, feature_extractor = load_classifier(self.model_id, self.trust_remote_code)
                    self.form = choose_serving_form(model, feature_extractor, self.forms)
                    self.feature_extractor = feature_extractor
                    self.problem = ""
                except Exception as error:  # no network, unknown id, not a classifier: tell, keep the page up
                    logger.exception("Could not load %s", self.model_id)
                    self.problem = (
                        f"The model `{self.model_id}` could not be loaded ({type(error).__name__}: {error}). Set "
                        "`MODEL_ID` to a Hub model id or a local folder of a gtzan-hf classifier (SSAST or CNN)."
                    )
            return self.problem

    def classify(self, path: str | os.PathLike | None, hop_seconds: float | None = None) -> DemoResult:
        """
        Classify one recording: windows of [`window_seconds`] every `hop_seconds` (a quarter of a window to a whole
        one, the default: no longer, so that no audio is skipped), soft vote.
        """
        if self.load():
            raise DemoError(self.problem)
        window_seconds = self.window_seconds
        hop_seconds = hop_seconds or window_seconds
        if not 0.25 * window_seconds <= hop_seconds <= window_seconds:
            raise DemoError(f"The hop must be between {0.25 * window_seconds:g} and {window_seconds:g} s.")
        samples, sampling_rate = load_recording(path)
        num_channels = samples.shape[1]
        # downmixed and resampled here, so that the decoded channels are freed before the filter bank is computed
        mono = to_mono(samples, sampling_rate, self.feature_extractor.sampling_rate)
        del samples
        prediction = classify_song(
            mono,
            self.feature_extractor.sampling_rate,
            self.form.model,
            self.feature_extractor,
            window_seconds=window_seconds,
            hop_seconds=hop_seconds,
            batch_size=self.form.batch_size,
        )
        return DemoResult(prediction, Path(path).name, sampling_rate, num_channels)


def serve_on_cpu() -> int:
    """Use one torch thread per CPU this process really has (see [`cpu_count`]); returns that number."""
    threads = cpu_count()
    torch.set_num_threads(threads)
    return threads


# Generated example clips shipped with the Space: (file name, [(genre, seconds), ...]); a medley shows the timeline.
EXAMPLES = (
    ("metal.ogg", [("metal", 12.0)]),
    ("classical.ogg", [("classical", 12.0)]),
    ("reggae.ogg", [("reggae", 12.0)]),
    ("medley-jazz-disco.ogg", [("jazz", 10.0), ("disco", 10.0)]),
)


def write_examples(out_dir: str | os.PathLike, seed: int = 2026, sampling_rate: int = 22050) -> list[Path]:
    """Write the Space's example clips ([`EXAMPLES`]) as mono Ogg Vorbis; the same seed writes the same audio."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, (name, parts) in enumerate(EXAMPLES):
        rng = np.random.default_rng([seed, index])
        audio = np.concatenate([synthesize_song(genre, rng, seconds, sampling_rate) for genre, seconds in parts])
        sf.write(out_dir / name, audio, sampling_rate, format="OGG", subtype="VORBIS")
        paths.append(out_dir / name)
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the Gradio Space's generated example clips.")
    parser.add_argument("out_dir", nargs="?", default="space/examples")
    args = parser.parse_args(argv)
    for path in write_examples(args.out_dir):
        print(f"{path}: {path.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
