"""Figures of filter banks and of whole-song predictions: the spectrogram the model was given and the per-window
timeline shown by the Gradio Space, also used by the run reports. matplotlib only: no data or training stack."""

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from ..models.feature_extraction_ssast import FRAME_SHIFT_MS
from .songs import SongPrediction


def show_fbank(axes, fbank: np.ndarray, title: str, duration: float | None = None) -> None:
    """A `(frames, mel_bins)` filter bank as an image: time across (in seconds when the `duration` it spans is given,
    else in frames), low frequencies at the bottom."""
    extent = (0, duration, 0, fbank.shape[1]) if duration else None
    axes.imshow(fbank.T, origin="lower", aspect="auto", cmap="magma", interpolation="none", extent=extent)
    axes.set_title(title)
    axes.set_ylabel("mel bin")
    axes.set_xlabel("time (s)" if duration else f"frame ({FRAME_SHIFT_MS:g} ms)")


def spectrogram_figure(prediction: SongPrediction) -> Figure:
    """The whole song's normalised log-mel filter bank as the model was given it, its windows marked."""
    figure = Figure(figsize=(10, 3.2))
    axes = figure.subplots()
    title = "log-mel spectrogram given to the model (normalised)"
    show_fbank(axes, prediction.fbank, title, duration=prediction.duration)
    for start in prediction.window_starts[1:]:
        axes.axvline(start, color="white", linestyle="--", linewidth=0.8, alpha=0.7)
    figure.tight_layout()
    return figure


def timeline_figure(prediction: SongPrediction) -> Figure:
    """
    Per-window class probabilities along the song: one stacked bar per window, from its start to the next window's
    (the whole window when windows do not overlap; the last one to its end), the top class written above the bar.
    """
    starts, probabilities = prediction.window_starts, prediction.window_probabilities
    widths = np.append(starts[1:], prediction.window_ends[-1]) - starts
    colours = matplotlib.colormaps["tab10" if len(prediction.label_names) <= 10 else "tab20"]
    figure = Figure(figsize=(10, 3.2))
    axes = figure.subplots()
    bottom = np.zeros(len(starts))
    for label, name in enumerate(prediction.label_names):
        axes.bar(starts, probabilities[:, label], widths, bottom=bottom, align="edge", label=name,
                 color=colours(label % colours.N), edgecolor="white", linewidth=0.5)  # fmt: skip
        bottom += probabilities[:, label]
    if len(starts) <= 30:  # names stay readable
        for start, width, row in zip(starts, widths, probabilities):
            axes.text(start + width / 2, 1.02, prediction.label_names[row.argmax()], ha="center", va="bottom",
                      fontsize=8, rotation=90 if len(starts) > 8 else 0)  # fmt: skip
    axes.set_xlim(0, prediction.duration)
    axes.set_ylim(0, 1.25)
    axes.set_yticks([0, 0.5, 1])
    axes.set_xlabel("time (s)")
    axes.set_ylabel("probability")
    axes.set_title(f"genre of each {prediction.window_seconds:g} s window")
    axes.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    figure.tight_layout()
    return figure
