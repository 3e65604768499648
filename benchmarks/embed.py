"""
Embedding throughput, in windows per second: `gtzan_hf.commands.embed` against transformers' `ASTModel` with the same
weights, and `scripts/embed.py` end to end.

    python scripts/benchmark.py embed          # tiny (2 layers) and base (12 layers), stride 10, 1024 frames
    python scripts/benchmark.py embed --models tiny:2 --repeats 5 --workdir /tmp/bench/embed

For each model, SSAST converted from a random transformers `ASTForAudioClassification` (same weights, outputs checked
equal) embeds the same random batch of `(batch, 1024, 128)` windows, in evaluation mode without gradients; each
repetition times, in turn (interleaved, so that drifts of the machine hit all alike):
- `mean`: the mean of the last layer's patch tokens (`scripts/embed.py`'s default);
- `layer L/2`: the same at the middle layer, through `output_hidden_states`;
- `patches`: the whole patch grid;
- AST: transformers' `ASTModel` and its `pooler_output` (the class tokens' mean), the peer.
Medians are printed, with the speed ratio `mean` / AST (above 1: ours is faster). Then `run_embed` (what
`scripts/embed.py` runs: cached windows, the encoder, parquet files) embeds a generated corpus of 3 genres x
`--songs-per-genre` songs x 10 s (one window a song) with each model, once its filter-bank cache is built: windows per
second end to end.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import torch
from transformers import ASTConfig, ASTForAudioClassification

from gtzan_hf.commands.embed import EmbedArguments, run_embed, window_embeddings
from gtzan_hf.data import DataConfig
from gtzan_hf.data.synthetic import GTZAN_GENRES, generate_corpus
from gtzan_hf.models.configuration_ssast import SSAST_SIZES
from gtzan_hf.models.convert import from_original_checkpoint
from gtzan_hf.models.feature_extraction_ssast import SSASTFeatureExtractor

GENRES = GTZAN_GENRES[:3]


def _models(size: str, layers: int, args: argparse.Namespace):
    torch.manual_seed(0)
    config = ASTConfig(
        **SSAST_SIZES[size],
        num_hidden_layers=layers,
        frequency_stride=args.stride,
        time_stride=args.stride,
        max_length=args.max_length,
        num_mel_bins=128,
        num_labels=len(GENRES),  # the corpus' classes: the saved model loads with its own head
        layer_norm_eps=1e-6,
        attn_implementation="sdpa",
    )
    ast = ASTForAudioClassification(config).eval()
    ours = from_original_checkpoint(ast, pooling="mean").eval()
    return ours, ast.audio_spectrogram_transformer.to(args.device)


@torch.no_grad()
def _windows_per_second(function, inputs: torch.Tensor) -> float:
    on_cuda = inputs.device.type == "cuda"
    if on_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    function(inputs)
    if on_cuda:  # wait for the queued kernels
        torch.cuda.synchronize()
    return len(inputs) / (time.perf_counter() - start)


def _end_to_end(model_dir: Path, corpus: Path, args: argparse.Namespace) -> float:
    embed_args = EmbedArguments(
        model=str(model_dir), output_dir=str(model_dir / "embeddings"), batch_size=args.batch_size, device=args.device
    )
    data_args = DataConfig(dataset=str(corpus), cache_dir=str(corpus.parent / "cache"))
    start = time.perf_counter()
    counts = run_embed(embed_args, data_args)
    return sum(counts.values()) / (time.perf_counter() - start)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="benchmark.py embed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["tiny:2", "base:12"], help="SIZE:LAYERS of each model")
    parser.add_argument("--stride", type=int, default=10)
    parser.add_argument("--max-length", type=int, default=1024, help="input frames")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions (after one warm-up)")
    parser.add_argument("--songs-per-genre", type=int, default=10, help="end-to-end corpus (10: the fewest to split)")
    parser.add_argument("--workdir", help="where the corpus, its cache and the models go (default: a temp folder)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)

    on_cuda = args.device.startswith("cuda")
    device_name = torch.cuda.get_device_name() if on_cuda else f"{os.cpu_count()} CPU cores"
    print(
        f"# embed benchmark: stride {args.stride}, {args.max_length} frames x 128 bins, batch {args.batch_size}, "
        f"{args.repeats} repeats, device {args.device} ({device_name}, {torch.get_num_threads()} threads), "
        f"torch {torch.__version__}"
    )
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="embed-benchmark-"))
    corpus = workdir / "corpus"
    if not corpus.exists():
        generate_corpus(corpus, songs_per_genre=args.songs_per_genre, seed=0, duration=10.0, genres=GENRES)
    print("| model | mean (windows/s) | layer L/2 | patches | AST pooler | mean / AST | scripts/embed.py end to end |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for spec in args.models:
        size, layers = spec.split(":")
        layers = int(layers)
        ours, ast = _models(size, layers, args)
        inputs = torch.randn(args.batch_size, args.max_length, 128, generator=torch.Generator().manual_seed(0))
        inputs = inputs.to(args.device)
        encoder = ours.ssast.to(args.device)
        with torch.no_grad():
            expected = ast(inputs).last_hidden_state[:, 2:].mean(1)
        torch.testing.assert_close(window_embeddings(encoder, inputs), expected, atol=1e-4, rtol=1e-4)
        functions = {
            "mean": partial(window_embeddings, encoder),
            "layer": partial(window_embeddings, encoder, layer=layers // 2),
            "patches": partial(window_embeddings, encoder, pooling="patches"),
            "ast": lambda batch, ast=ast: ast(batch).pooler_output,
        }
        rates = {name: [] for name in functions}
        for repeat in range(args.repeats + 1):
            for name, function in functions.items():
                rate = _windows_per_second(function, inputs)
                if repeat:  # the first round warms up
                    rates[name].append(rate)
        median = {name: statistics.median(values) for name, values in rates.items()}

        model_dir = workdir / f"ssast-{size}-{layers}"
        ours.save_pretrained(model_dir)
        SSASTFeatureExtractor(max_length=args.max_length).save_pretrained(model_dir)
        if spec == args.models[0]:  # builds the corpus' filter-bank cache, untimed
            _end_to_end(model_dir, corpus, args)
        end_to_end = _end_to_end(model_dir, corpus, args)
        print(
            f"| {size}, {layers} layers | {median['mean']:.2f} | {median['layer']:.2f} | {median['patches']:.2f} | "
            f"{median['ast']:.2f} | {median['mean'] / median['ast']:.3f} | {end_to_end:.2f} |"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
