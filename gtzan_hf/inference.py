"""Whole-song inference: load a classifier, cut a song into windows as in evaluation, classify them in batches and
vote. Shared by `scripts/evaluate.py`-style tooling and the Gradio Space."""

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

from .audio import to_mono
from .feature_extraction_ssast import SSASTFeatureExtractor
from .voting import vote
from .windowing import FRAMES_PER_SECOND, seconds_to_frames, segment_starts, window_fbank


@dataclass
class SongPrediction:
    """A song's windows and what the model made of them."""

    label_names: list[str]
    window_starts: np.ndarray  # (windows,) start of each window, seconds
    window_probabilities: np.ndarray  # (windows, labels)
    probabilities: np.ndarray  # (labels,) soft vote: mean of the window probabilities
    fbank: np.ndarray  # (frames, mel_bins) the song's normalised filter bank, as the model saw it
    window_seconds: float = 10.0

    @property
    def duration(self) -> float:
        """Seconds of audio covered by the filter bank."""
        return self.fbank.shape[0] / FRAMES_PER_SECOND

    @property
    def window_ends(self) -> np.ndarray:
        """`(windows,)` end of each window, seconds: the last ones stop where the song does."""
        return np.minimum(self.window_starts + self.window_seconds, self.duration)

    @property
    def label(self) -> str:
        return self.label_names[vote(self.window_probabilities, "soft")]

    def top(self, k: int = 5) -> dict[str, float]:
        """The `k` most probable classes, most probable first."""
        order = np.argsort(-self.probabilities)[:k]
        return {self.label_names[i]: float(self.probabilities[i]) for i in order}


def quantize_linear_layers(model: torch.nn.Module) -> torch.nn.Module:
    """
    The CPU serving form of a classifier: its `nn.Linear` layers dynamically quantised to int8 (`quantize_dynamic`:
    weights per output channel, activations per batch at run time), the rest (attention products, layer norms,
    convolutions) and the `classifier` head left in float32: the head is a sliver of the compute, and quantising
    the logits' own layer doubled the change of the probabilities. Linear layers hold nearly all of a transformer's
    compute; `python scripts/benchmark.py space` measures the speed-up and the top-1 agreement with the float32
    model. (The CNN's compute is its convolutions: it stays float32.) CPU only; the model is changed in place.
    """
    qconfig_spec = {
        name: torch.ao.quantization.per_channel_dynamic_qconfig
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and name.split(".")[0] != "classifier"
    }
    with warnings.catch_warnings():
        # torch.ao's eager quantisation is deprecated in favour of torchao, but still shipped and the fastest on CPU
        warnings.filterwarnings("ignore", message="torch.ao.quantization is deprecated", category=DeprecationWarning)
        return torch.ao.quantization.quantize_dynamic(model, qconfig_spec, dtype=torch.qint8, inplace=True)


def load_classifier(model_id: str, trust_remote_code: bool = True, quantize: bool = False, **kwargs):
    """
    `(model, feature_extractor)` of a saved or Hub SSAST / CNN classifier (any folder written by `save_pretrained`,
    whose code travels with it), in evaluation mode; with `quantize`, in its int8 CPU serving form
    ([`quantize_linear_layers`]).
    """
    model = AutoModelForAudioClassification.from_pretrained(model_id, trust_remote_code=trust_remote_code, **kwargs)
    feature_extractor = AutoFeatureExtractor.from_pretrained(model_id, trust_remote_code=trust_remote_code, **kwargs)
    model.eval()
    return (quantize_linear_layers(model) if quantize else model), feature_extractor


def check_label_names(model, label_names: list[str], source: str) -> None:
    """Refuse to score a model on a dataset whose classes are not the ones it predicts, in the same order."""
    model_labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    if model_labels != list(label_names):
        raise ValueError(
            f"{source} predicts {model_labels} but the dataset's classes are {list(label_names)}: evaluate on the "
            "dataset the model was trained for."
        )


@torch.inference_mode()
def classify_song(
    waveform: np.ndarray,
    sampling_rate: int,
    model: torch.nn.Module,
    feature_extractor: SSASTFeatureExtractor,
    window_seconds: float = 10.0,
    hop_seconds: float | None = None,
    batch_size: int = 8,
) -> SongPrediction:
    """
    Classify a whole recording by fixed windows and soft voting, as the evaluation does.

    Args:
        waveform: `(num_samples,)` mono or `(num_samples, num_channels)` audio, float in [-1, 1], any rate.
        sampling_rate: its sampling rate; it is downmixed and resampled to the feature extractor's.
        window_seconds: window length (the training crop, 10 s for the course project's recipe).
        hop_seconds: distance between window starts (default `window_seconds`: no overlap).
        batch_size: windows per forward pass.
    """
    samples = np.asarray(waveform, dtype=np.float32)
    mono = to_mono(samples[:, None] if samples.ndim == 1 else samples, sampling_rate, feature_extractor.sampling_rate)
    fbank = feature_extractor.fbank(torch.from_numpy(mono))
    window_frames = seconds_to_frames(window_seconds)
    hop_frames = seconds_to_frames(hop_seconds or window_seconds)
    windows = window_fbank(fbank, window_frames, hop_frames, pad_to=feature_extractor.max_length)
    windows = feature_extractor.normalize(windows, inplace=True)
    parameter = next(model.parameters())  # inputs go where the weights are, in their dtype (e.g. bfloat16)
    probabilities = torch.cat(
        [
            model(input_values=batch.to(parameter.device, parameter.dtype)).logits.float().softmax(-1).cpu()
            for batch in windows.split(batch_size)
        ]
    ).numpy()
    starts = np.asarray(segment_starts(fbank.shape[0], window_frames, hop_frames)) / FRAMES_PER_SECOND
    id2label = model.config.id2label
    return SongPrediction(
        label_names=[id2label[i] for i in range(len(id2label))],
        window_starts=starts,
        window_probabilities=probabilities,
        probabilities=probabilities.mean(axis=0),
        fbank=feature_extractor.normalize(fbank).numpy(),
        window_seconds=window_seconds,
    )
