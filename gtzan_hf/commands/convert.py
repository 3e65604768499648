"""`scripts/convert_ssast_checkpoint.py`: convert an original SSAST/AST checkpoint or a transformers AST model into an
SSAST folder (`gtzan_hf.models.loading.convert_checkpoint`)."""

from ..models.loading import convert_checkpoint
from ..models.source import CONVERTIBLE, resolve_model
from .cli import OneLineErrors, entry_point


def main(argv: list[str] | None = None) -> None:
    """`scripts/convert_ssast_checkpoint.py`: convert a checkpoint and save it as an SSAST folder."""
    parser = OneLineErrors(
        description="Convert an original SSAST/AST checkpoint or a transformers AST model into an SSAST folder."
    )
    parser.add_argument(
        "checkpoint", help="released name (SSAST-Base-Patch-400), .pth file, transformers AST folder or Hub id"
    )
    parser.add_argument("output_dir", help="folder to write the SSAST model and feature extractor to")
    parser.add_argument(
        "--freq_stride", "--fstride", type=int, help="frequency stride (default: 10 for patches, 128 for frames)"
    )
    parser.add_argument(
        "--time_stride", "--tstride", type=int, help="time stride (default: 10 for patches, 1 for frames)"
    )
    parser.add_argument("--max_length", "--input_tdim", "--input-tdim", type=int, help="input frames (default: 1024)")
    parser.add_argument(
        "--num_mel_bins", "--input_fdim", "--input-fdim", type=int, default=128, help="mel bins (default: 128)"
    )
    parser.add_argument(
        "--num_labels", "--num-labels", type=int, help="classes of the head (a new head if it differs)"
    )
    parser.add_argument("--pooling", choices=("mean", "cls"), help="default: mean (SSAST), cls (transformers AST)")
    parser.add_argument(
        "--for_pretraining",
        "--for-pretraining",
        action="store_true",
        help="convert a pretraining checkpoint into SSASTForPreTraining (heads kept) to continue pretraining",
    )
    parser.add_argument(
        "--num_masked_patches",
        "--num-masked-patches",
        type=int,
        default=400,
        help="with --for-pretraining: patches masked per sample",
    )
    parser.add_argument("--traceback", action="store_true", help="show the traceback of errors")
    args = parser.parse_args(argv)
    source = resolve_model(args.checkpoint, accepts=CONVERTIBLE, what="CHECKPOINT")
    if args.for_pretraining:
        model = convert_checkpoint(
            source, args.output_dir, for_pretraining=True, num_masked_patches=args.num_masked_patches
        )
    else:
        model = convert_checkpoint(
            source,
            args.output_dir,
            freq_stride=args.freq_stride,
            time_stride=args.time_stride,
            max_length=args.max_length,
            num_mel_bins=args.num_mel_bins,
            num_labels=args.num_labels,
            pooling=args.pooling,
        )
    config = model.config
    print(
        f"Saved {type(model).__name__} to {args.output_dir}: "
        f"{config.num_hidden_layers} layers x {config.hidden_size}, "
        f"{config.patch_freq}x{config.patch_time} patches with stride ({config.freq_stride}, {config.time_stride}), "
        f"{config.max_length} frames x {config.num_mel_bins} bins, "
        + (
            f"{config.num_masked_patches} patches masked per sample."
            if args.for_pretraining
            else f"pooling {config.pooling!r}, {config.num_labels} labels."
        )
    )


cli = entry_point(main)

if __name__ == "__main__":
    cli()
