"""Training throughput of the `ssast-gtzan` recipe on the current device, and the projected wall time of its full
170-epoch run.

    python scripts/benchmark.py train [--batch-size 16] [--steps 20] [--warmup 3] [--num-layers 12]

One optimiser step of `AudioClassificationTrainer` (its loss, backward, the LLRD AdamW groups) of SSAST-Base with 16x16
patches, stride 10, 1024 frames, on a batch of in-memory windows (the data pipeline is measured by `benchmark.py
data`; it delivers far more clips/s than this step consumes). bf16 autocast and SDPA attention on a GPU; float32
on a CPU. Weights are random: the released checkpoint has the same shapes and cost.
"""

import argparse
import sys
import tempfile
import time

import torch

from gtzan_hf.commands.cli import CONFIGS_DIR, mixed_precision_defaults, read_config_file
from gtzan_hf.models.configuration_ssast import SSASTConfig
from gtzan_hf.models.modeling_ssast import SSASTForAudioClassification
from gtzan_hf.training.trainer import AudioClassificationTrainer, AudioTrainingArguments

# GTZAN random split: 80 % of the 999 readable songs, one random crop per song and epoch.
GTZAN_TRAIN_SONGS = 799


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="benchmark.py train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=None, help="default: 16 on a GPU, 2 on a CPU")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: 20 on a GPU, 2 on a CPU)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--num-layers", type=int, default=12)
    args = parser.parse_args(argv)

    on_gpu = torch.cuda.is_available()
    batch_size = args.batch_size or (16 if on_gpu else 2)
    steps = args.steps or (20 if on_gpu else 2)
    recipe = read_config_file(CONFIGS_DIR / "finetune" / "ssast-gtzan.yaml")
    config = SSASTConfig.from_size(
        "base",
        num_hidden_layers=args.num_layers,
        freq_stride=recipe["freq_stride"],
        time_stride=recipe["time_stride"],
        max_length=recipe["max_length"],
        num_labels=10,
    )
    with tempfile.TemporaryDirectory() as output_dir:  # the Trainer creates its output folder; nothing is saved
        training_args = AudioTrainingArguments(
            output_dir=output_dir,
            learning_rate=recipe["learning_rate"],
            head_learning_rate=recipe["head_learning_rate"],
            label_smoothing_factor=recipe["label_smoothing_factor"],
            per_device_train_batch_size=batch_size,
            report_to=[],
            save_strategy="no",
            **mixed_precision_defaults(),
        )
        trainer = AudioClassificationTrainer(model=SSASTForAudioClassification(config), args=training_args)
    trainer.create_optimizer_and_scheduler(num_training_steps=args.warmup + steps)
    # accelerate wraps the forward pass in bf16/fp16 autocast, as in `Trainer.train`
    model = trainer.accelerator.prepare_model(trainer.model.to(training_args.device).train())
    batch = {
        "input_values": torch.randn(batch_size, config.max_length, config.num_mel_bins, device=training_args.device),
        "labels": torch.randint(0, 10, (batch_size,), device=training_args.device),
        "song_index": torch.arange(batch_size, device=training_args.device),
    }

    def step() -> None:
        trainer.accelerator.backward(trainer.compute_loss(model, batch))
        trainer.optimizer.step()
        trainer.optimizer.zero_grad()

    for _ in range(args.warmup):
        step()
    if on_gpu:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if on_gpu:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start

    clips_per_second = batch_size * steps / seconds
    epochs = recipe["num_train_epochs"]
    projected_hours = epochs * GTZAN_TRAIN_SONGS / clips_per_second / 3600
    device = torch.cuda.get_device_name() if on_gpu else f"CPU ({torch.get_num_threads()} threads)"
    precision = "bf16" if training_args.bf16 else "fp16" if training_args.fp16 else "fp32"
    print(f"device: {device}; SSAST-Base, {args.num_layers} layers, patch 16, stride 10, {config.max_length} frames")
    print(f"precision: {precision}; attention: SDPA; batch {batch_size}; {steps} timed steps after {args.warmup}")
    print(f"training: {clips_per_second:.2f} clips/s ({seconds / steps:.3f} s per step)")
    print(
        f"projected {epochs}-epoch recipe ({GTZAN_TRAIN_SONGS} songs per epoch, validation excluded): "
        f"{projected_hours:.1f} h"
    )
    if on_gpu:
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


if __name__ == "__main__":
    main(sys.argv[1:])
