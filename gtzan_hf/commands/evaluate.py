"""Evaluation of saved or Hub models on a dataset's validation and test splits, alone or as an ensemble, with the
same reports as a fine-tuning run. `scripts/evaluate_model.py` is its command line.

`evaluate_model.py RUN_DIR`, with no other flag, re-scores a finished fine-tuning run exactly as it was scored: the
run's own dataset, split, windows (from its `run_config.json`, checked against its `splits.json`) and normalisation
(its saved feature extractor). Any flag overrides the saved value.
"""

import dataclasses
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..data.collator import evaluation_dataloader
from ..inference.songs import check_label_names, load_classifier
from ..models.convert import model_type_of
from ..reports.evaluation import SplitPredictions, comparison_table, predict, write_evaluation_reports
from .cli import DataArguments, check_model_path, entry_point, load_datasets, parse_args, resolve_dataset

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
    model_id: str, data_args: DataArguments, batch_size: int, device: str, trust_remote_code: bool = False
):
    """Predictions of one model on the validation and test splits, featurised with its own feature extractor."""
    model, feature_extractor = load_classifier(model_id, trust_remote_code=trust_remote_code)
    data = load_datasets(data_args, feature_extractor)
    check_label_names(model, data.label_names, model_id)
    predictions = {
        split: predict(model, evaluation_dataloader(getattr(data, split), batch_size, data.num_labels), device)
        for split in SPLITS
    }
    return predictions, data


def average_probabilities(members: list[SplitPredictions]) -> SplitPredictions:
    """Ensemble of models evaluated on the same windows: log of the mean probability as logits."""
    first = members[0]
    for other in members[1:]:
        if not (np.array_equal(other.labels, first.labels) and np.array_equal(other.song_index, first.song_index)):
            raise ValueError("Ensemble members were evaluated on different windows: use the same crop settings.")
    mean = np.mean([member.probabilities() for member in members], axis=0)
    return SplitPredictions(logits=np.log(mean + 1e-12), labels=first.labels, song_index=first.song_index)


def saved_data_arguments(model: str | None) -> dict:
    """The `DataArguments` a fine-tuning run in folder `model` was made with (its run_config.json), or `{}`."""
    if model is None or not (Path(model) / "run_config.json").is_file():
        return {}
    saved = json.loads((Path(model) / "run_config.json").read_text())
    return {f.name: saved[f.name] for f in dataclasses.fields(DataArguments) if f.name in saved}


def check_same_songs(run_dir: str, data, data_args: DataArguments) -> None:
    """When the split settings are the run's, the songs must be too: a changed corpus gives other figures."""
    saved = Path(run_dir) / "splits.json"
    if not saved.is_file():
        return
    run_songs = json.loads(saved.read_text())["song_ids"]
    for split in SPLITS:
        if sorted(run_songs[split]) != sorted(data.song_ids[split]):
            raise ValueError(
                f"The {split} songs of {data_args.dataset} ({data_args.split} split) differ from those in {saved}: "
                "the dataset has changed since the run. Pass the run's dataset with --dataset, or another --split to "
                "evaluate on other songs on purpose."
            )


def run_evaluate(args: EvaluateArguments, data_args: DataArguments) -> dict | str:
    if args.compare:
        table = comparison_table(args.compare)
        print(table)
        return table
    models = args.ensemble or ([args.model] if args.model else [])
    if not models:
        raise ValueError("Name a model to evaluate (MODEL), models to --ensemble, or runs to --compare.")
    for model_id in models:  # before any data is prepared
        check_model_path(model_id, "MODEL")
        model_type_of(model_id)
    device = resolve_device(args.device)
    saved = saved_data_arguments(models[0])
    output_dir = Path(args.output_dir or (Path(models[0]) / "evaluation" if saved else "evaluation"))
    data_args.dataset = resolve_dataset(data_args)
    evaluated = [
        evaluate_model(model_id, data_args, args.batch_size, device, args.trust_remote_code) for model_id in models
    ]
    data = evaluated[0][1]
    if len(evaluated) == 1:
        splits = evaluated[0][0]
    else:
        splits = {split: average_probabilities([pred[split] for pred, _ in evaluated]) for split in SPLITS}
    split_settings = ("dataset", "split", "split_seed", "fold", "num_folds")
    if saved and all(saved.get(key) == getattr(data_args, key) for key in split_settings):
        check_same_songs(models[0], data, data_args)
    metrics = write_evaluation_reports(splits, data.label_names, output_dir)
    data.info.save(output_dir / "splits.json")
    (output_dir / "evaluation_config.json").write_text(
        json.dumps({**asdict(args), **asdict(data_args), "models": models}, indent=2)
    )
    for split in SPLITS:
        logger.info(
            "%s: clip accuracy %.4f, song accuracy %.4f",
            split,
            metrics[split]["clip_accuracy"],
            metrics[split]["song_accuracy"],
        )
    return metrics


def main(argv: list[str] | None = None) -> None:
    argv = list(argv or [])
    if argv and not argv[0].startswith("-"):  # `evaluate_model.py MODEL ...`
        argv = ["--model", *argv]
    # A run folder's own data settings (the first of an ensemble's) are the defaults; flags override them.
    models = parse_args((EvaluateArguments, DataArguments), argv)[0]
    first = models.model or next(iter(models.ensemble), None)
    args, data_args, _ = parse_args((EvaluateArguments, DataArguments), argv, defaults=saved_data_arguments(first))
    run_evaluate(args, data_args)


cli = entry_point(main)

if __name__ == "__main__":
    cli()
