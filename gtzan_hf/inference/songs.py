"""Whole-song inference: load a classifier, cut a song into windows as in evaluation, classify them in batches and
vote. Shared by the evaluation tooling and the Gradio Space."""

from dataclasses import dataclass

import numpy as np
import torch
from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

from ..models.checkpoints import safe_model_weights
from ..models.configuration_cnn import CNNConfig
from ..models.configuration_ssast import SSASTConfig
from ..models.convert import model_type_of
from ..models.feature_extraction_ssast import SSASTFeatureExtractor
from .audio import to_mono
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


# The model types whose code is the package's own (registered with the Auto classes on import): loading them runs
# nothing from the folder.
OWN_MODEL_TYPES = (SSASTConfig.model_type, CNNConfig.model_type)


def load_classifier(model_id: str, trust_remote_code: bool = False, **kwargs):
    """
    `(model, feature_extractor)` of a saved or Hub SSAST / CNN classifier (any folder written by `save_pretrained`),
    in evaluation mode, built from the package's own classes. A folder of another `model_type` would run the code it
    ships (`auto_map`): it is refused unless `trust_remote_code` (`--trust_remote_code` in the scripts,
    `TRUST_REMOTE_CODE=1` for the Space). Weights that hold Python objects besides tensors are refused in one line
    ([`~gtzan_hf.models.checkpoints.safe_model_weights`]).
    """
    model_type = model_type_of(model_id)
    if model_type not in OWN_MODEL_TYPES and not trust_remote_code:
        raise ValueError(
            f"{model_id} holds a {model_type!r} model, not SSAST or the CNN: loading it would run the code shipped "
            "in its folder. If you trust it, pass --trust_remote_code (scripts) or set TRUST_REMOTE_CODE=1 (the "
            "Space)."
        )
    with safe_model_weights(model_id):
        model = AutoModelForAudioClassification.from_pretrained(
            model_id, trust_remote_code=trust_remote_code, **kwargs
        )
    feature_extractor = AutoFeatureExtractor.from_pretrained(model_id, trust_remote_code=trust_remote_code, **kwargs)
    return model.eval(), feature_extractor


# Windows held at once by `classify_song`: the model's input for 16 windows of 1024 frames is 8 MB, and with it the
# memory of a request stays that of its audio and filter bank, however long the song.
CHUNK_WINDOWS = 16
# Filter-bank frames computed at once: torchaudio's Kaldi fbank holds several float32 copies of the framed signal
# while it works (frames, FFT, power spectrum); 30 s at a time keeps them to tens of MB, whatever the song's length.
CHUNK_FRAMES = 3000


def song_fbank(waveform: torch.Tensor, feature_extractor: SSASTFeatureExtractor) -> torch.Tensor:
    """
    [`SSASTFeatureExtractor.fbank`] of a whole mono song, computed by chunks of `CHUNK_FRAMES` frames so that its
    working memory stays bounded. Kaldi frames are independent (25 ms every 10 ms, no dither, no whole-song mean),
    so the chunks give the same frames as the whole.

    Returns:
        `torch.Tensor` of shape `(num_frames, num_mel_bins)`.
    """
    shift = feature_extractor.sampling_rate // FRAMES_PER_SECOND
    length = int(feature_extractor.sampling_rate * 0.025)
    num_frames = 1 + (waveform.numel() - length) // shift
    return torch.cat(
        [
            feature_extractor.fbank(
                waveform[first * shift : (min(first + CHUNK_FRAMES, num_frames) - 1) * shift + length]
            )
            for first in range(0, max(num_frames, 1), CHUNK_FRAMES)
        ]
    )


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
    Classify a whole recording by fixed windows and soft voting, as the evaluation does. The song's filter bank is
    computed once; its windows are cut, normalised and classified `CHUNK_WINDOWS` at a time.

    Args:
        waveform: `(num_samples,)` mono or `(num_samples, num_channels)` audio, float in [-1, 1], any rate.
        sampling_rate: its sampling rate; it is downmixed and resampled to the feature extractor's.
        model: a classifier, or a serving form of one ([`gtzan_hf.serving.forms`]): `model(input_values=...).logits`.
        window_seconds: window length (the training crop, 10 s in the course project's recipe).
        hop_seconds: distance between window starts (default `window_seconds`: no overlap).
        batch_size: windows per forward pass.
    """
    samples = np.asarray(waveform, dtype=np.float32)
    mono = to_mono(samples[:, None] if samples.ndim == 1 else samples, sampling_rate, feature_extractor.sampling_rate)
    fbank = song_fbank(torch.from_numpy(mono), feature_extractor)
    del samples, mono
    window_frames = seconds_to_frames(window_seconds)
    hop_frames = seconds_to_frames(hop_seconds or window_seconds)
    starts = segment_starts(fbank.shape[0], window_frames, hop_frames)
    parameter = next(model.parameters(), None)  # inputs go where the weights are, in their dtype (e.g. bfloat16)
    device, dtype = (parameter.device, parameter.dtype) if parameter is not None else ("cpu", torch.float32)
    probabilities = []
    for first in range(0, len(starts), CHUNK_WINDOWS):
        chunk = starts[first : first + CHUNK_WINDOWS]
        # the chunk's windows, padded before normalisation as in training
        windows = window_fbank(
            fbank[chunk[0] : chunk[-1] + window_frames],
            window_frames,
            hop_frames,
            num_segments=len(chunk),
            pad_to=feature_extractor.max_length,
        )
        windows = feature_extractor.normalize(windows, inplace=True)
        for batch in windows.split(batch_size):
            logits = model(input_values=batch.to(device, dtype)).logits
            probabilities.append(logits.float().softmax(-1).cpu())
    probabilities = torch.cat(probabilities).numpy()
    id2label = model.config.id2label
    return SongPrediction(
        label_names=[id2label[i] for i in range(len(id2label))],
        window_starts=np.asarray(starts) / FRAMES_PER_SECOND,
        window_probabilities=probabilities,
        probabilities=probabilities.mean(axis=0),
        fbank=feature_extractor.normalize(fbank, inplace=True).numpy(),
        window_seconds=window_seconds,
    )
