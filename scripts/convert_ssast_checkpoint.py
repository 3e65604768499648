"""
Convert an original SSAST/AST checkpoint or a transformers AST model into an SSAST folder for `from_pretrained`.

    python scripts/convert_ssast_checkpoint.py SSAST-Base-Patch-400.pth ssast-base-patch \\
        --fstride 10 --tstride 10 --input-tdim 1024 --num-labels 10

CHECKPOINT: a released self-supervised checkpoint (SSAST-{Base,Small,Tiny}-{Patch,Frame}-{250,400}.pth), a fine-tuned
checkpoint saved by the original SSAST/AST code, or a transformers ASTForAudioClassification folder or Hub id
(e.g. MIT/ast-finetuned-audioset-10-10-0.4593). See `gtzan_hf.convert`.
"""

import argparse
import sys
from pathlib import Path

# scripts/evaluate.py would shadow the `evaluate` library for the scripts of this folder: keep the folder off the path.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

from gtzan_hf.convert import convert_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help=".pth file, transformers AST folder or Hub id")
    parser.add_argument("output_dir", help="folder to write the SSAST model and feature extractor to")
    parser.add_argument("--fstride", type=int, help="frequency stride (default: 10 for patches, 128 for frames)")
    parser.add_argument("--tstride", type=int, help="time stride (default: 10 for patches, 1 for frames)")
    parser.add_argument("--input-tdim", type=int, help="input frames, the model's max_length (default: 1024)")
    parser.add_argument("--input-fdim", type=int, default=128, help="mel bins (default: 128)")
    parser.add_argument("--num-labels", type=int, help="classes of the head (a new head if it differs)")
    parser.add_argument("--pooling", choices=("mean", "cls"), help="default: mean (SSAST), cls (transformers AST)")
    parser.add_argument(
        "--for-pretraining",
        action="store_true",
        help="convert a pretraining checkpoint into SSASTForPreTraining (heads kept) to continue pretraining",
    )
    parser.add_argument(
        "--num-masked-patches", type=int, default=400, help="with --for-pretraining: patches masked per sample"
    )
    args = parser.parse_args()
    if args.for_pretraining:
        model = convert_checkpoint(
            args.checkpoint, args.output_dir, for_pretraining=True, num_masked_patches=args.num_masked_patches
        )
    else:
        model = convert_checkpoint(
            args.checkpoint,
            args.output_dir,
            fstride=args.fstride,
            tstride=args.tstride,
            input_tdim=args.input_tdim,
            input_fdim=args.input_fdim,
            num_labels=args.num_labels,
            pooling=args.pooling,
        )
    config = model.config
    print(
        f"Saved {type(model).__name__} to {args.output_dir}: "
        f"{config.num_hidden_layers} layers x {config.hidden_size}, "
        f"{config.patch_freq}x{config.patch_time} patches with stride ({config.freq_stride}, {config.time_stride}), "
        f"{config.max_length} frames x {config.num_mel_bins} bins, pooling {config.pooling!r}, "
        f"{config.num_labels} labels."
    )


if __name__ == "__main__":
    main()
