"""Evaluation of saved or Hub models on a dataset's validation and test splits, alone or as an ensemble, with the
same reports as a fine-tuning run. `scripts/evaluate_model.py` is its command line.

`evaluate_model.py RUN_DIR`, with no other flag, re-scores a finished fine-tuning run exactly as it was scored: the
run's own dataset, split, windows (from its `run_config.json`, checked against its `splits.json`) and normalisation
(its saved feature extractor). Any flag overrides the saved value.
"""

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..data import DataConfig, SplitInfo, build_datasets
from ..data.collator import evaluation_dataloader
from ..errors import UserError
from ..inference.predict import WindowPredictions, predict
from ..models.loading import check_label_names, load_classifier
from ..models.source import TRAINED, ModelSource, resolve_model
from ..reports.evaluation import comparison_table, write_evaluation_reports
from .cli import entry_point, parse_args

logger = logging.getLogger(__name__)

SPLITS = ("validation", "test")


@dataclass
class EvaluateArguments:
    model: str | None = field(default=None, metadata={"help": "Saved folder or Hub id of the model to evaluate."})
    ensemble: list[str] = field(
        default_factory=list,
        metadata={"help": "Two or more models whose probabilities are averaged (e.g. the CNN and SSAST runs)."},
    )
    output_dir: str | None = field(
        default=None,
        metadata={"help": "Where metrics.json and the figures go (default: RUN_DIR/evaluation, or ./evaluation)."},
    )
    batch_size: int = field(default=16, metadata={"help": "Windows per forward pass."})
    device: str = field(default="cuda_if_available", metadata={"help": "cpu, cuda, ... (default: a GPU if any)."})
    compare: list[str] = field(
        default_factory=list,
        metadata={"help": "Run folders to tabulate (the course project's Table 1 layout) instead."},
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Run the code shipped inside a model folder whose type is not SSAST/CNN."}
    )


def resolve_device(device: str) -> str:
    if device == "cuda_if_available":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def evaluate_model(
    source: ModelSource, data_config: DataConfig, batch_size: int, device: str, run_dir: str | None = None
):
    """Predictions of one model on the validation and test splits, featurised with its own feature extractor, on
    its own windows unless `data_config` names others; with `run_dir`, the songs are checked against the run's
    before any prediction ([`check_same_songs`])."""
    model, feature_extractor = load_classifier(source)
    data = build_datasets(data_config, feature_extractor)
    check_label_names(model, data.label_names, source.name)
    if run_dir is not None:
        check_same_songs(run_dir, data, data_config)
    model.to(device)
    predictions = {
        split: predict(model, evaluation_dataloader(getattr(data, split), batch_size, data.num_labels), True)
        for split in SPLITS
    }
    return predictions, data


def average_probabilities(members: list[WindowPredictions]) -> WindowPredictions:
    """Ensemble of models evaluated on the same windows: log of the mean probability as logits."""
    first = members[0]
    for other in members[1:]:
        if not (np.array_equal(other.labels, first.labels) and np.array_equal(other.song_index, first.song_index)):
            raise UserError(
                "Ensemble members were evaluated on different windows: pass --crop_seconds and --eval_hop_seconds."
            )
    mean = np.mean([member.probabilities() for member in members], axis=0)
    return WindowPredictions(logits=np.log(mean + 1e-12), labels=first.labels, song_index=first.song_index)


def saved_data_settings(model: str | None) -> dict:
    """The data settings a fine-tuning run in folder `model` was made with (its run_config.json), or `{}`."""
    if model is None or not (Path(model) / "run_config.json").is_file():
        return {}
    return DataConfig.saved_values(json.loads((Path(model) / "run_config.json").read_text()))


def check_same_songs(run_dir: str, data, data_config: DataConfig) -> None:
    """When the split settings are the run's, the songs and their audio must be too: a changed corpus gives other
    figures."""
    saved = Path(run_dir) / "splits.json"
    changes = SplitInfo.load(saved).changes(data.info, SPLITS) if saved.is_file() else ""
    if changes:
        raise UserError(
            f"The songs of {data_config.dataset} ({data_config.split} split) differ from those in {saved}: {changes}. "
            "The dataset has changed since the run: pass the run's dataset with --dataset, or another --split to "
            "evaluate on other songs on purpose."
        )


def run_evaluate(args: EvaluateArguments, data_config: DataConfig) -> dict | str:
    if args.compare:
        table = comparison_table(args.compare)
        print(table)
        return table
    names = args.ensemble or ([args.model] if args.model else [])
    if not names:
        raise UserError("Name a model to evaluate (MODEL), models to --ensemble, or runs to --compare.")
    # resolved before any data is prepared: a bad model is refused at once
    sources = [
        resolve_model(name, accepts=TRAINED, trust_remote_code=args.trust_remote_code, what="MODEL") for name in names
    ]
    device = resolve_device(args.device)
    saved = saved_data_settings(names[0])
    output_dir = Path(args.output_dir or (Path(names[0]) / "evaluation" if saved else "evaluation"))
    data_config.dataset = data_config.resolved_dataset()
    # on the run's own split, its songs must be those it was scored on
    split_settings = ("dataset", "split", "split_seed", "fold", "num_folds")
    same_split = saved and all(saved.get(key) == getattr(data_config, key) for key in split_settings)
    run_dir = names[0] if same_split else None
    evaluated = [
        evaluate_model(source, data_config, args.batch_size, device, run_dir if index == 0 else None)
        for index, source in enumerate(sources)
    ]
    data = evaluated[0][1]
    if len(evaluated) == 1:
        splits = evaluated[0][0]
    else:
        splits = {split: average_probabilities([pred[split] for pred, _ in evaluated]) for split in SPLITS}
    metrics = write_evaluation_reports(splits, data.label_names, output_dir)
    data.info.save(output_dir / "splits.json")
    # the windows used, whether asked for or the model's own
    data_config.crop_seconds, data_config.eval_hop_seconds = data.windows.seconds, data.windows.hop_seconds
    (output_dir / "evaluation_config.json").write_text(
        json.dumps({**asdict(args), **asdict(data_config), "models": names}, indent=2)
    )
    for split in SPLITS:
        clip, song = metrics[split]["clip_accuracy"], metrics[split]["song_accuracy"]
        logger.info("%s: clip accuracy %.4f, song accuracy %.4f", split, clip, song)
    return metrics


def main(argv: list[str] | None = None) -> None:
    argv = list(argv or [])
    if argv and not argv[0].startswith("-"):  # `evaluate_model.py MODEL ...`
        argv = ["--model", *argv]
    # A run folder's own data settings (the first of an ensemble's) are the defaults; flags override them.
    models = parse_args((EvaluateArguments, DataConfig), argv)[0]
    first = models.model or next(iter(models.ensemble), None)
    args, data_config, _ = parse_args((EvaluateArguments, DataConfig), argv, defaults=saved_data_settings(first))
    run_evaluate(args, data_config)


cli = entry_point(main)

if __name__ == "__main__":
    cli()
