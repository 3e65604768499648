"""
A classifier's head fitted as a logistic regression on its frozen network: a linear probe. The features the head's
last linear layer reads, of every window of the labelled songs, are standardised and given to scikit-learn's
`LogisticRegression`, its inverse regularisation `C` chosen by cross-validation grouped by song (song accuracy, soft
vote); the standardisation and the regression are then written into that linear layer. The result is an ordinary
model: `pipeline`, the Auto classes, evaluation and the Space run it unchanged.

With a few labelled tracks per class this beats training the network end to end (docs/few-labels.md): the network
is kept as it is, pretrained or as initialised, and only `num_labels × (features + 1)` numbers are fitted.
"""

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits
from torch import nn

from ..errors import UserError
from ..inference.predict import iterate_predictions, placement
from ..inference.voting import song_predictions

logger = logging.getLogger(__name__)

DEFAULT_C_VALUES = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)


def probe_pipeline(c: float, max_iter: int = 1000) -> Pipeline:
    """A logistic regression on standardised features, of inverse regularisation `c`."""
    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter))


def fitted_probe(c: float, features: np.ndarray, labels: np.ndarray) -> Pipeline:
    """`probe_pipeline(c)` fitted on one BLAS thread: its products (windows x features x classes) are too small for
    threads to pay, and threads waiting on each other beside torch's cost 10 to 20 times the fit on a busy 2-core
    machine."""
    with threadpool_limits(limits=1, user_api="blas"):
        return probe_pipeline(c).fit(features, labels)


def best_c(scores: dict[float, tuple[float, float]]) -> float:
    """The `C` of the best `(song accuracy, clip accuracy)`; on a tie, the stronger regularisation (smaller `C`)."""
    return max(scores, key=lambda c: (*scores[c], -c))


def head_layer(model: nn.Module) -> nn.Linear:
    """The last linear layer of `model.classifier`, whose output is the logits."""
    linears = [module for module in model.classifier.modules() if isinstance(module, nn.Linear)]
    if not linears:
        raise UserError(f"{type(model).__name__}'s classifier has no linear layer to fit as a probe.")
    return linears[-1]


@torch.inference_mode()
def window_features(model: nn.Module, batches: Iterable[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(features (windows, in_features), labels (windows,), song_index (windows,))`: what the head's last linear
    layer reads for every window of `batches`."""
    model.eval()
    captured = []
    hook = head_layer(model).register_forward_pre_hook(lambda _, args: captured.append(args[0]))

    def step(input_values: torch.Tensor) -> dict[str, torch.Tensor]:
        model(input_values=input_values)
        return {"features": captured.pop()}

    try:
        rows = list(iterate_predictions(step, batches, *placement(model)))
    finally:
        hook.remove()
    if not rows:
        raise UserError("No windows to fit the probe on: the labelled splits are empty.")
    return tuple(np.concatenate([row[name] for row in rows]) for name in ("features", "labels", "song_index"))


@dataclass
class ProbeFit:
    """What fitting the probe chose and saw: saved as the run's `linear_probe.json`."""

    c: float
    cv_folds: int
    # `C` -> cross-validated (song accuracy, clip accuracy) over the labelled songs
    cv_scores: dict[float, tuple[float, float]]
    num_songs: int
    num_windows: int
    num_features: int

    def to_json(self) -> dict:
        return {
            "c": self.c,
            "cv_folds": self.cv_folds,
            "cv_song_accuracy": {f"{c:g}": song for c, (song, _) in self.cv_scores.items()},
            "cv_clip_accuracy": {f"{c:g}": clip for c, (_, clip) in self.cv_scores.items()},
            "num_songs": self.num_songs,
            "num_windows": self.num_windows,
            "num_features": self.num_features,
        }


def cross_validated_scores(
    features: np.ndarray, labels: np.ndarray, songs: np.ndarray, c: float, folds: StratifiedGroupKFold
) -> tuple[float, float]:
    """`(song accuracy, clip accuracy)` of out-of-fold predictions: every song is predicted by a probe fitted
    without any of its windows."""
    probabilities = np.zeros((len(labels), labels.max() + 1))
    for train, held_out in folds.split(features, labels, groups=songs):
        probe = fitted_probe(c, features[train], labels[train])
        probabilities[np.ix_(held_out, probe.classes_)] = probe.predict_proba(features[held_out])
    _, song_labels, song_predicted = song_predictions(probabilities, labels, songs)
    return float((song_labels == song_predicted).mean()), float((probabilities.argmax(1) == labels).mean())


def write_head(layer: nn.Linear, probe: Pipeline, num_labels: int) -> None:
    """Write a fitted `probe_pipeline` into `layer`: `W ((x - mean) / scale) + b` is `(W / scale) x + b - W mean /
    scale`. A binary regression (one row, the second class's log-odds) becomes two rows of opposite halves: the same
    softmax."""
    scaler, regression = probe[0], probe[-1]
    weight = regression.coef_ / scaler.scale_
    bias = regression.intercept_ - weight @ scaler.mean_
    if num_labels == 2 and weight.shape[0] == 1:
        weight, bias = np.concatenate([-weight, weight]) / 2, np.concatenate([-bias, bias]) / 2
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(weight, dtype=layer.weight.dtype))
        layer.bias.copy_(torch.as_tensor(bias, dtype=layer.bias.dtype))


def fit_linear_probe(
    model: nn.Module,
    batches: Iterable[dict],
    c_values: Iterable[float] = DEFAULT_C_VALUES,
    cv_folds: int = 5,
    seed: int = 0,
) -> ProbeFit:
    """
    Fit `model`'s head as a linear probe on the windows of `batches` (dicts with `input_values`, `labels` and
    `song_index`) and write it into the head's last linear layer (the rest of the model is left as it is).

    `C` is chosen among `c_values` by `cv_folds`-fold cross-validation grouped by song and stratified by class (fewer
    folds when the smallest class has fewer songs): the best out-of-fold song accuracy, then clip accuracy, then the
    stronger regularisation. The probe is then fitted on every window with that `C`.
    """
    features, labels, songs = window_features(model, batches)
    num_labels = model.config.num_labels
    present = np.unique(labels)
    if len(present) != num_labels:
        missing = sorted(set(range(num_labels)) - set(present.tolist()))
        names = ", ".join(model.config.id2label[index] for index in missing)
        raise UserError(f"No labelled windows of {names}: every class needs labelled songs to fit the probe.")
    first_windows = np.unique(songs, return_index=True)[1]
    songs_per_class = np.bincount(labels[first_windows], minlength=num_labels)
    folds = min(cv_folds, int(songs_per_class.min()))
    if folds < 2:
        raise UserError(
            "Choosing the probe's regularisation needs at least 2 labelled songs of every class; "
            f"{model.config.id2label[int(songs_per_class.argmin())]} has {int(songs_per_class.min())}."
        )
    splitter = StratifiedGroupKFold(folds, shuffle=True, random_state=seed)
    scores = {float(c): cross_validated_scores(features, labels, songs, c, splitter) for c in c_values}
    c = best_c(scores)
    logger.info(
        "Linear probe: C=%g (cross-validated song accuracy %s) on %d windows of %d songs, %d features",
        c,
        ", ".join(f"C={key:g} {100 * song:.1f} %" for key, (song, _) in scores.items()),
        len(labels),
        len(first_windows),
        features.shape[1],
    )
    write_head(head_layer(model), fitted_probe(c, features, labels), num_labels)
    return ProbeFit(c, folds, scores, len(first_windows), len(labels), features.shape[1])
