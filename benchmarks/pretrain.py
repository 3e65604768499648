"""Pretraining step benchmark: SSAST's joint masked objective against fine-tuning steps of the same model and input.

    python scripts/benchmark.py pretrain [--model-size base] [--batch-size 2] [--steps 3] [--warmup 1]

Times whole training steps (forward, backward, AdamW update) on random `max_length` x 128 inputs, one model at a time,
on the GPU when there is one:
- pretraining: `SSASTForPreTraining`, 16x16 patches without overlap, `--masked` patches masked (cluster masking drawn
  in the step), both heads and losses from one encoder pass;
- the original code's joint step: the same model, but one encoder pass per objective with a mask each, as
  `src/traintest_mask.py` runs `pretrain_mpc` then `pretrain_mpg`;
- fine-tuning on the same patches: `SSASTForAudioClassification` with stride 16 (the same number of tokens);
- fine-tuning, the recipe: stride 10, the overlapping patches `scripts/finetune.py` trains with.
Prints steps/s for each and the ratios of the pretraining step to the fine-tuning steps.
"""

import argparse
import sys
import time
from collections.abc import Callable

import torch

from gtzan_hf.models.configuration_ssast import SSASTConfig
from gtzan_hf.models.modeling_ssast import SSASTForAudioClassification, SSASTForPreTraining

NUM_LABELS = 10


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _steps_per_second(
    model: torch.nn.Module, loss_of: Callable[[torch.nn.Module], torch.Tensor], steps: int, warmup: int
) -> float:
    device = next(model.parameters()).device
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    for step in range(warmup + steps):
        if step == warmup:
            _synchronize(device)
            start = time.perf_counter()
        loss_of(model).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    _synchronize(device)
    return steps / (time.perf_counter() - start)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="benchmark.py pretrain", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-size", default="base", choices=["tiny", "small", "base"])
    parser.add_argument("--num-hidden-layers", type=int, default=12)
    parser.add_argument("--max-length", type=int, default=1024, help="input frames (1024 in the paper)")
    parser.add_argument("--masked", type=int, default=400, help="masked patches per sample (400 in the paper)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per model")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    args = parser.parse_args(argv)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    size = dict(num_hidden_layers=args.num_hidden_layers, max_length=args.max_length)
    input_values = torch.randn(args.batch_size, args.max_length, 128, device=device)
    labels = torch.randint(NUM_LABELS, (args.batch_size,), device=device)
    pretraining_config = SSASTConfig.from_size(
        args.model_size, freq_stride=16, time_stride=16, num_masked_patches=args.masked, **size
    )

    def joint(model):
        return model(input_values).loss

    def original_two_passes(model):
        weight = model.config.mpg_loss_weight
        return model(input_values).mpc_loss + weight * model(input_values).mpg_loss

    def classification(model):
        return model(input_values, labels=labels).loss

    runs = [
        ("pretraining, joint objective (one encoder pass)", SSASTForPreTraining, pretraining_config, joint),
        (
            "pretraining, the original's two encoder passes",
            SSASTForPreTraining,
            pretraining_config,
            original_two_passes,
        ),
    ]
    for stride in (16, 10):
        config = SSASTConfig.from_size(
            args.model_size, freq_stride=stride, time_stride=stride, num_labels=NUM_LABELS, **size
        )
        runs.append((f"fine-tuning, stride {stride}", SSASTForAudioClassification, config, classification))

    print(
        f"SSAST-{args.model_size}, {args.num_hidden_layers} layers, batch {args.batch_size} x {args.max_length} "
        f"frames, {args.masked} masked patches, {args.steps} timed steps after {args.warmup}; device {device}"
        + (f", {torch.get_num_threads()} torch threads" if device.type == "cpu" else "")
    )
    results = {}
    for name, model_class, config, loss_of in runs:
        torch.manual_seed(0)
        model = model_class(config).to(device)
        results[name] = _steps_per_second(model, loss_of, args.steps, args.warmup)
        print(f"  {name:52s} {config.num_patches:5d} patches  {results[name]:8.3f} steps/s")
        del model
    pretraining = results[runs[0][0]]
    for name, *_ in runs[1:]:
        print(f"  time of a pretraining step / {name}: {results[name] / pretraining:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
