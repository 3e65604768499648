"""
Embeddings of every window of a dataset from a frozen SSAST encoder, written as parquet through `datasets`, e.g. for
linear probes (`gtzan_hf.commands.probe`) or any downstream model. `scripts/embed.py` is its command line.

Output folder:
- `windows/{train,validation,test}-NNNNN.parquet`: one row per window, with `song_id`, `label` (`ClassLabel`),
  `split`, `window_start` (seconds) and `embedding` (float32);
- `songs/{split}-NNNNN.parquet` with `--per_song`: one row per song, the mean of its windows' embeddings;
- `README.md`, a dataset card whose configs make `datasets.load_dataset(DIR)` (windows) and
  `load_dataset(DIR, "songs")` work, and `embeddings_config.json` (model, provenance, pooling, layer, shapes, data).

`embedding` is the model's width (192 tiny, 384 small, 768 base) for `--pooling mean` (the patch tokens' mean, the
`pooling="mean"` of SSAST's `ft_avgtok`) and `cls` (the class tokens' mean); for `patches` it is the whole patch grid,
`(freq_patches, time_patches, hidden_size)` flattened in that order (`embedding_shape` in `embeddings_config.json`):
12 x 101 x 768 floats, 3.7 MB a window, for the base model with stride 10 on 1024 frames.

`--layer N` takes the hidden state after block N (0: the patch embeddings before any block) with the encoder's final
layer norm applied, as to the last block's output: every layer is then on the scale the pooled output has, and
`--layer <num_hidden_layers>` equals the default (the last layer).
"""

import json
import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from datasets import ClassLabel, Dataset, Features, List, Value
from huggingface_hub.utils import tqdm

from ..data import DataConfig, build_datasets
from ..data.collator import evaluation_dataloader
from ..errors import UserError
from ..inference.predict import iterate_predictions
from ..models.loading import ModelArguments, build_classifier, build_feature_extractor
from ..models.modeling_ssast import SSASTModel
from ..models.source import ModelSource
from .cli import entry_point, parse_args
from .evaluate import resolve_device

logger = logging.getLogger(__name__)

POOLINGS = ("mean", "cls", "patches")
SPLITS = ("train", "validation", "test")
# Rows are written in parquet files of about this size: the patch grids of a whole dataset do not fit in memory.
SHARD_BYTES = 256 << 20


@dataclass
class EmbedArguments:
    model: str | None = field(
        default=None,
        metadata={
            "help": "An SSAST folder or Hub id (fine-tuned, converted or a scripts/pretrain.py output), an original "
            ".pth or a released name (SSAST-Base-Patch-400)."
        },
    )
    output_dir: str = field(default="embeddings", metadata={"help": "Where the parquet files go."})
    pooling: Literal[POOLINGS] = field(
        default="mean", metadata={"help": "mean (patch tokens) | cls (class tokens) | patches (the whole grid)."}
    )
    layer: int | None = field(
        default=None,
        metadata={"help": "Hidden state after block N (0: patch embeddings), final layer norm applied; default last."},
    )
    per_song: bool = field(default=False, metadata={"help": "Also write each song's mean embedding (songs/)."})
    freq_stride: int | None = field(
        default=None,
        metadata={"aliases": ["--fstride"], "help": "Original checkpoints, pretraining folders: frequency stride."},
    )
    time_stride: int | None = field(
        default=None,
        metadata={"aliases": ["--tstride"], "help": "Original checkpoints, pretraining folders: time stride."},
    )
    max_length: int = field(
        default=1024,
        metadata={"aliases": ["--input_tdim"], "help": "Original checkpoints, pretraining folders: input frames."},
    )
    batch_size: int = field(default=16, metadata={"help": "Windows per forward pass."})
    device: str = field(default="cuda_if_available", metadata={"help": "cpu, cuda, ... (default: a GPU if any)."})
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Run the code shipped inside a model folder whose type is not SSAST."}
    )


@torch.no_grad()
def window_embeddings(
    encoder: SSASTModel, input_values: torch.Tensor, pooling: str = "mean", layer: int | None = None
) -> torch.Tensor:
    """
    Embeddings of a batch of windows.

    Args:
        encoder: the SSAST encoder (`model.ssast` of a classifier).
        input_values (`torch.Tensor` of shape `(batch_size, max_length, num_mel_bins)`): normalised filter banks.
        pooling: `"mean"`, `"cls"` or `"patches"` (see the module's docstring).
        layer: the hidden state after block `layer` (0 to `num_hidden_layers`), final layer norm applied; `None`
            for the last.

    Returns:
        `torch.Tensor` of shape `(batch_size, hidden_size)`, or `(batch_size, freq_patches * time_patches *
        hidden_size)` for `"patches"`.
    """
    outputs = encoder(input_values, output_hidden_states=layer is not None)
    hidden = outputs.last_hidden_state if layer is None else encoder.layernorm(outputs.hidden_states[layer])
    return encoder.pool(hidden, pooling)


class _ParquetShards:
    """The rows of one split, written to `folder/{split}-NNNNN.parquet` files of `rows_per_shard` rows."""

    def __init__(self, folder: Path, split: str, features: Features, rows_per_shard: int):
        self.folder, self.split, self.features, self.rows_per_shard = folder, split, features, rows_per_shard
        self.rows = {name: [] for name in features}
        self.shards = 0

    def add(self, **columns) -> None:
        for name, values in columns.items():
            self.rows[name].extend(values)
        if len(self.rows["song_id"]) >= self.rows_per_shard:
            self.flush()

    def flush(self) -> None:
        if self.rows["song_id"]:
            self.folder.mkdir(parents=True, exist_ok=True)
            path = self.folder / f"{self.split}-{self.shards:05d}.parquet"
            Dataset.from_dict(self.rows, features=self.features).to_parquet(path)
            self.shards += 1
        self.rows = {name: [] for name in self.features}


def _dataset_card(configs: list[str]) -> str:
    """A README whose configs let `load_dataset(DIR)` read the windows and `load_dataset(DIR, "songs")` the songs."""
    lines = ["---", "configs:"]
    for config in configs:
        lines += [f"- config_name: {config}", *(["  default: true"] if config == "windows" else []), "  data_files:"]
        lines += [f"  - split: {split}\n    path: {config}/{split}-*.parquet" for split in SPLITS]
    lines += [
        "---",
        "",
        "SSAST embeddings written by `scripts/embed.py` (gtzan-hf): see `embeddings_config.json`.",
        "",
    ]
    return "\n".join(lines)


def load_encoder(source: ModelSource, args: EmbedArguments, label_names: list[str]) -> SSASTModel:
    """The encoder of `source`, built as fine-tuning builds its starting model: original checkpoints, pretraining
    folders and AST models are converted with `args.freq_stride`, `args.time_stride` and `args.max_length`."""
    encoder = build_classifier(source, _model_arguments(args), label_names).base_model
    if not isinstance(encoder, SSASTModel):
        raise UserError(f"{args.model} is not an SSAST model: embeddings come from SSAST encoders.")
    depth = encoder.config.num_hidden_layers
    if args.layer is not None and not 0 <= args.layer <= depth:
        raise UserError(f"--layer {args.layer} does not exist: {args.model} has hidden states 0 to {depth}.")
    return encoder.eval()


def _model_arguments(args: EmbedArguments) -> ModelArguments:
    return ModelArguments(
        model_name_or_path=args.model,
        freq_stride=args.freq_stride,
        time_stride=args.time_stride,
        max_length=args.max_length,
        trust_remote_code=args.trust_remote_code,
    )


def run_embed(args: EmbedArguments, data_config: DataConfig) -> dict[str, int]:
    """Writes the embeddings of every window of the train, validation and test splits (the fixed evaluation
    windows in every split, without augmentation); returns the number of windows of each split."""
    if args.model is None:
        raise UserError("Name the model to embed with: MODEL (a folder, Hub id, .pth file or released name).")
    if args.pooling not in POOLINGS:
        raise UserError(f"Unknown --pooling {args.pooling!r}: choose one of {', '.join(POOLINGS)}.")
    source = _model_arguments(args).resolve()  # a bad model is refused before any data is prepared
    # the fixed windows of every split, train included: no crops, no augmentation
    data_config = replace(
        data_config,
        dataset=data_config.resolved_dataset(),
        crop_strategy="static",
        waveform_augment=False,
        freq_mask=0,
        time_mask=0,
    )
    feature_extractor = build_feature_extractor(source, args.max_length)
    data = build_datasets(data_config, feature_extractor)
    data_config.crop_seconds, data_config.eval_hop_seconds = data.windows.seconds, data.windows.hop_seconds
    encoder = load_encoder(source, args, data.label_names)
    device = resolve_device(args.device)
    encoder.to(device)

    def step(input_values: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"embedding": window_embeddings(encoder, input_values, args.pooling, args.layer)}

    config = encoder.config
    shape = [*config.patch_grid, config.hidden_size] if args.pooling == "patches" else [config.hidden_size]
    width = int(np.prod(shape))
    features = Features(
        {
            "song_id": Value("string"),
            "label": ClassLabel(names=data.label_names),
            "split": Value("string"),
            "window_start": Value("float32"),
            "embedding": List(Value("float32"), length=width),
        }
    )
    song_features = Features({name: value for name, value in features.items() if name != "window_start"})
    output_dir = Path(args.output_dir)
    rows_per_shard = max(1, SHARD_BYTES // (4 * width))
    counts = {}
    for split in SPLITS:
        dataset = getattr(data, split)
        index = dataset.with_format(None)[:]  # the song and first frame of every window, in order
        song_ids = [data.song_ids[split][song] for song in index["song_index"]]
        starts = [feature_extractor.frames_to_seconds(start) for start in index["start"]]
        windows = _ParquetShards(output_dir / "windows", split, features, rows_per_shard)
        songs = {}  # song_id -> (sum of its windows' embeddings, their number, label)
        done = 0
        batches = tqdm(evaluation_dataloader(dataset, args.batch_size, data.num_labels), desc=f"Embedding {split}")
        for row in iterate_predictions(step, batches, device):
            embeddings, labels = row["embedding"], row["labels"].tolist()
            batch_songs = song_ids[done : done + len(labels)]
            windows.add(
                song_id=batch_songs,
                label=labels,
                split=[split] * len(labels),
                window_start=starts[done : done + len(labels)],
                embedding=list(embeddings),
            )
            done += len(labels)
            if args.per_song:
                for song_id, label, embedding in zip(batch_songs, labels, embeddings):
                    total, count, _ = songs.get(song_id, (0.0, 0, label))
                    songs[song_id] = (total + embedding.astype(np.float64), count + 1, label)
        windows.flush()
        counts[split] = done
        if args.per_song:
            means = _ParquetShards(output_dir / "songs", split, song_features, rows_per_shard)
            for song_id, (total, count, label) in songs.items():
                means.add(song_id=[song_id], label=[label], split=[split], embedding=[total / count])
            means.flush()

    (output_dir / "README.md").write_text(_dataset_card(["windows", "songs"] if args.per_song else ["windows"]))
    description = {
        "model": args.model,
        "source_checkpoint": getattr(config, "source_checkpoint", None),
        "pooling": args.pooling,
        "layer": config.num_hidden_layers if args.layer is None else args.layer,
        "num_hidden_layers": config.num_hidden_layers,
        "embedding_shape": shape,
        "num_windows": counts,
        "data": asdict(data_config),
    }
    (output_dir / "embeddings_config.json").write_text(json.dumps(description, indent=2))
    data.info.save(output_dir / "splits.json")
    logger.info("Wrote the embeddings of %s windows to %s", counts, output_dir)
    return counts


def main(argv: list[str] | None = None) -> None:
    argv = list(argv or [])
    if argv and not argv[0].startswith("-"):  # `embed.py MODEL ...`
        argv = ["--model", *argv]
    args, data_config, _ = parse_args((EmbedArguments, DataConfig), argv)
    run_embed(args, data_config)


cli = entry_point(main)

if __name__ == "__main__":
    cli()
