"""Where the windows of a song lie: how long they are for a given model ([`model_windows`], the one place that
decides it), fixed windows for evaluation and serving, random crops for training.

Arithmetic on filter-bank frames (their length and shift in seconds are the feature extractor's), shared by the data
pipeline, pretraining, whole-song inference and the Space; it imports no data or training stack.
"""

from dataclasses import dataclass

import torch

from ..errors import UserError


@dataclass(frozen=True)
class Windows:
    """How songs are cut for a model: windows of `seconds` (training crops and evaluation windows), `hop_seconds`
    apart (evaluation and whole-song inference), and the same in filter-bank frames."""

    seconds: float
    hop_seconds: float
    frames: int
    hop_frames: int


def model_windows(feature_extractor, seconds: float | None = None, hop_seconds: float | None = None) -> Windows:
    """
    The windows to cut audio into for the model whose feature extractor is `feature_extractor`: `seconds` and
    `hop_seconds` where given; else those the model was trained and evaluated on (its feature extractor's
    `window_seconds` and `hop_seconds`, which a fine-tuning run records); else its whole input (`max_length` frames),
    without overlap. A window longer than the model's input, or a hop that is not positive, is refused.
    """
    input_seconds = feature_extractor.frames_to_seconds(feature_extractor.max_length)
    recorded = getattr(feature_extractor, "window_seconds", None)
    window = seconds or recorded or input_seconds
    frames = feature_extractor.seconds_to_frames(window)
    if frames > feature_extractor.max_length or window <= 0:
        raise UserError(
            f"A {window:g} s window is {frames} frames; this model reads at most "
            f"{feature_extractor.max_length} frames ({input_seconds:g} s): choose a window of at most "
            f"{input_seconds:g} s, or leave it unset to use the model's own ({recorded or input_seconds:g} s)."
        )
    hop = hop_seconds or getattr(feature_extractor, "hop_seconds", None) or window
    if hop <= 0:
        raise UserError(f"The hop between windows must be positive, got {hop:g} s.")
    return Windows(float(window), float(hop), frames, feature_extractor.seconds_to_frames(hop))


def segment_starts(
    num_frames: int, segment_frames: int, hop_frames: int | None = None, num_segments: int | None = None
) -> list[int]:
    """
    First frames of the fixed windows a song of `num_frames` frames is cut into.

    Windows start every `hop_frames` (default `segment_frames`). With `num_segments`, the first `num_segments`
    windows that start inside the song (GTZAN: 0-10, 10-20, 20-30 s). Without, as many as cover the song: full
    windows, then one last partial window when what is left after the last full one holds at least half a hop.
    Always at least one window.
    """
    hop_frames = hop_frames or segment_frames
    if num_segments is None:
        full = max(0, (num_frames - segment_frames) // hop_frames + 1)
        left_over = num_frames - ((full - 1) * hop_frames + segment_frames)
        num_segments = max(1, full + (full > 0 and 2 * left_over >= hop_frames))
    return [index * hop_frames for index in range(num_segments) if index == 0 or index * hop_frames < num_frames]


def random_start(num_frames: int, window_frames: int, generator: torch.Generator | None = None) -> int:
    """First frame of a random window of `window_frames` frames, uniform over the positions where it fits (0 when
    the song is shorter: the whole song, padded)."""
    return int(torch.randint(0, max(num_frames - window_frames, 0) + 1, (), generator=generator))


def window_fbank(
    fbank: torch.Tensor,
    segment_frames: int = 1000,
    hop_frames: int | None = None,
    num_segments: int | None = None,
    pad_to: int | None = None,
    padding_value: float = 0.0,
) -> torch.Tensor:
    """
    Cut a whole-song fbank `(num_frames, num_mel_bins)` into its fixed windows ([`segment_starts`]), each padded
    with `padding_value` (before normalisation) to `pad_to` frames (default `segment_frames`).

    Returns:
        `torch.Tensor` of shape `(num_windows, pad_to, num_mel_bins)`.
    """
    pad_to = pad_to or segment_frames
    windows = []
    for start in segment_starts(fbank.shape[0], segment_frames, hop_frames, num_segments):
        window = fbank[start : start + min(segment_frames, pad_to)]
        windows.append(torch.nn.functional.pad(window, (0, 0, 0, pad_to - window.shape[0]), value=padding_value))
    return torch.stack(windows)
