"""What the Gradio Space (`space/app.py`) does behind its page: load the served model once, check and decode a
recording within bounds, classify it by windows and soft voting ([`gtzan_hf.inference.songs.classify_song`]) and lay
out the results. Every problem a visitor can cause or meet is a [`DemoError`] whose message says what to do.
"""

import logging
import numbers
import os
import reprlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf
import torch

from ..inference.audio import AudioTooLargeError, Recording, read_recording
from ..inference.songs import SongPrediction, iter_classify_song
from ..inference.windowing import model_windows
from ..models.loading import load_classifier
from .forms import EXAMPLES_DIR, choose_serving_form

logger = logging.getLogger(__name__)

MIN_SECONDS = 1.0
# 10 minutes. Measured: a 9.5-minute 48 kHz stereo WAV raises the Space's peak RSS by 0.73 GB, whatever the hop
# (`python scripts/benchmark.py space_load`). Decoding, the downmix and the resampling set that peak; the filter
# bank and the windows, worked on by bounded chunks (`gtzan_hf.inference.songs`), stay below it.
MAX_SECONDS = 600.0
# Samples a request may decode (channels × frames, read from the header before decoding): 10 minutes of 48 kHz
# stereo. Files are decoded by blocks, their channels averaged at once (`read_recording`), so a request holds the
# mono waveform, at most 230 MB of float32; an 8-channel 96 kHz file of 9 minutes (0.4 MB of FLAC silence) is
# refused from its header instead of being decoded.
MAX_DECODED_SAMPLES = int(MAX_SECONDS) * 48000 * 2
# The page's window while no model is loaded; a loaded model's own are used (`model_windows`).
WINDOW_SECONDS = 10.0
FORMATS = "WAV, FLAC, OGG or MP3"
# The example clips the page offers (generated music: `python -m gtzan_hf.data.synthetic --space-examples DIR`).
EXAMPLE_CLIPS = sorted(EXAMPLES_DIR.glob("*.ogg"))


class DemoError(Exception):
    """A recording the page cannot classify, or no model to classify it with; the message is shown to the visitor."""


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def load_recording(
    path: str | os.PathLike | None, min_seconds: float = MIN_SECONDS, max_seconds: float = MAX_SECONDS
) -> Recording:
    """
    Decode an uploaded or recorded file to mono, refusing what cannot be classified with a message that says why.

    The duration, channels and rate are read from the header first, so an over-long or over-large file is refused
    before it is decoded (at most [`MAX_DECODED_SAMPLES`]); files soundfile cannot open go through
    `read_recording`'s torchcodec fallback, checked against the header it reads.
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
        recording = read_recording(str(path), MAX_DECODED_SAMPLES)
    except AudioTooLargeError as error:
        raise DemoError(f"{name} cannot be classified: {error.reason}.") from None
    except Exception as error:  # any decoding failure: the file is not (intact) audio
        # decoders quote the path: the server's upload folder is no business of the visitor's
        reason = str(error).replace(str(path), name)
        raise DemoError(
            f"{name} could not be read as audio ({type(error).__name__}: {reason}). Upload a {FORMATS} file."
        ) from None
    problem = recording.problem
    if problem:
        raise DemoError(f"{name} cannot be classified: {problem}. Upload a recording of music, {limits}.")
    if not min_seconds <= recording.duration <= max_seconds:
        raise DemoError(f"{name} lasts {recording.duration:.1f} s: the demo takes recordings {limits}.")
    return recording


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
        """One Markdown line: the verdict and what was analysed; while windows are left, how many are done."""
        prediction = self.prediction
        windows = len(prediction.window_starts)
        channels = "mono" if self.num_channels == 1 else f"{self.num_channels} channels"
        if not prediction.complete:
            return (
                f"**{prediction.label}** so far ({100 * prediction.probabilities.max():.0f} %) — {self.name}: "
                f"classifying, {windows} of {prediction.num_windows} windows of {prediction.window_seconds:g} s "
                "done…"
            )
        return (
            f"**{prediction.label}** ({100 * prediction.probabilities.max():.0f} %) — {self.name}: "
            f"{prediction.duration:.1f} s, {self.sampling_rate} Hz {channels}, {windows} window"
            f"{'s' if windows > 1 else ''} of {prediction.window_seconds:g} s, soft vote."
        )


class GenreClassifier:
    """
    The page's model: loaded once (`load`), shared by all requests, in the serving form calibration found fastest
    on this machine among `forms` ([`gtzan_hf.serving.forms.choose_serving_form`]). A model that cannot be loaded
    leaves `problem` set, and `classify` retries the load, so a Hub hiccup at start-up does not need a restart. A
    folder whose code is not the package's is refused unless `trust_remote_code`.
    """

    def __init__(self, model_id: str | None, forms: list[str] | None = None, trust_remote_code: bool = False):
        self.model_id = model_id
        self.forms = forms
        self.trust_remote_code = trust_remote_code
        self.form = self.feature_extractor = None
        self.problem = ""
        self._lock = threading.Lock()

    @property
    def window_seconds(self) -> float:
        """The model's window ([`~gtzan_hf.inference.windowing.model_windows`]: the one it was trained on, else its
        whole input); `WINDOW_SECONDS` while no model is loaded."""
        if self.feature_extractor is None:
            return WINDOW_SECONDS
        return model_windows(self.feature_extractor).seconds

    @property
    def hop_seconds(self) -> float:
        """The default hop: the model's evaluation hop, at most a window so that the timeline skips no audio."""
        if self.feature_extractor is None:
            return WINDOW_SECONDS
        return min(model_windows(self.feature_extractor).hop_seconds, self.window_seconds)

    def load(self) -> str:
        """Load the model if not loaded yet; returns the problem (`""` when it is ready)."""
        with self._lock:
            if self.form is None and not self.model_id:
                self.problem = (
                    "No model is set: set the Space variable `MODEL_ID` to a Hub model id or a local folder of a "
                    "gtzan-hf classifier (SSAST or CNN), then restart the Space."
                )
            elif self.form is None:
                try:
                    model, feature_extractor = load_classifier(self.model_id, self.trust_remote_code)
                    self.form = choose_serving_form(model, feature_extractor, self.forms)
                    self.feature_extractor = feature_extractor
                    self.problem = ""
                except Exception as error:  # no network, unknown id, not a classifier: tell, keep the page up
                    logger.exception("Could not load %s", self.model_id)
                    reason = f"{type(error).__name__}: {str(error).rstrip('.')}"
                    self.problem = (
                        f"The model `{self.model_id}` could not be loaded ({reason}). Set `MODEL_ID` to a Hub model "
                        "id or a local folder of a gtzan-hf classifier (SSAST or CNN)."
                    )
            return self.problem

    def classify(self, path: str | os.PathLike | None, hop_seconds: float | None = None) -> DemoResult:
        """
        Classify one recording: windows of [`window_seconds`] every `hop_seconds` (a quarter of a window to a whole
        one: no longer, so that no audio is skipped; default [`hop_seconds`]), soft vote.
        """
        *_, result = self.iter_classify(path, hop_seconds)
        return result

    def iter_classify(self, path: str | os.PathLike | None, hop_seconds: float | None = None) -> Iterator[DemoResult]:
        """
        [`classify`] pass by pass ([`~gtzan_hf.inference.songs.iter_classify_song`]): after each forward pass, the
        result of the windows classified so far; the last is [`classify`]'s. The recording is checked and decoded
        before the first, and a problem raised as a [`DemoError`].
        """
        if self.load():
            raise DemoError(self.problem)
        window_seconds = self.window_seconds
        hop_seconds = self.hop_seconds if hop_seconds is None else hop_seconds
        # the API passes on whatever a client sends: a string, a list
        if (
            isinstance(hop_seconds, bool)
            or not isinstance(hop_seconds, numbers.Real)
            or not 0.25 * window_seconds <= hop_seconds <= window_seconds
        ):
            raise DemoError(
                f"The hop must be a number of seconds between {0.25 * window_seconds:g} and {window_seconds:g} s; "
                f"got {reprlib.repr(hop_seconds)}."
            )
        recording = load_recording(path)
        sampling_rate, num_channels = recording.sampling_rate, recording.num_channels
        mono = recording.resampled(self.feature_extractor.sampling_rate)
        del recording  # the waveform at the file's rate, before the filter bank is computed
        predictions = iter_classify_song(
            mono,
            self.feature_extractor.sampling_rate,
            self.form.model,
            self.feature_extractor,
            window_seconds=window_seconds,
            hop_seconds=hop_seconds,
            batch_size=self.form.batch_size,
        )
        del mono  # the generator lets it go once the filter bank is computed
        for prediction in predictions:
            yield DemoResult(prediction, Path(path).name, sampling_rate, num_channels)


def serve_on_cpu() -> int:
    """Use one torch thread per CPU this process really has (see [`cpu_count`]); returns that number."""
    threads = cpu_count()
    torch.set_num_threads(threads)
    return threads
