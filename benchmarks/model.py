"""
SSASTForAudioClassification against transformers' ASTForAudioClassification, side by side on the same configuration.

    python scripts/benchmark.py model                       # base size, 1024 frames, strides 10 and 16
    python scripts/benchmark.py model --num-layers 2 --max-length 256 --repeats 3   # a quick look

Both models get the same weights (ours converted from the AST model, logits checked equal) and the same input. Each
repetition times, for both models in turn (interleaved, so that drifts of the machine hit both alike), one training
step (forward + cross-entropy + backward, batch 2, train mode) and one forward pass (eval mode, no gradients); the
medians and the ratio ours / AST are printed. AST runs with its SDPA attention.

Peak memory: on CUDA, `torch.cuda.max_memory_allocated` during the step (weights, gradients and activations). On CPU,
each (model, step) pair runs once in a fresh subprocess, which reports how far the step lifts the peak resident set
size (`VmHWM`, reset once the model is built) above the resident size of the built model: what the step itself
costs (activations, gradients, workspaces), seen from outside the allocator, as CPU PyTorch keeps no peak
statistics. A fresh process is needed because memory freed after a step stays resident for reuse.
"""

import argparse
import platform
import statistics
import subprocess
import sys
import time
from functools import partial

import torch
from transformers import ASTConfig, ASTForAudioClassification

from gtzan_hf.models.configuration_ssast import SSAST_SIZES
from gtzan_hf.models.convert import from_original_checkpoint


def _ast_config(args: argparse.Namespace, stride: int) -> ASTConfig:
    return ASTConfig(
        **SSAST_SIZES[args.size],
        num_hidden_layers=args.num_layers,
        frequency_stride=stride,
        time_stride=stride,
        max_length=args.max_length,
        num_mel_bins=128,
        num_labels=10,
        layer_norm_eps=1e-6,
        attn_implementation="sdpa",
    )


def _models(args: argparse.Namespace, stride: int) -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    ast = ASTForAudioClassification(_ast_config(args, stride))
    ours = from_original_checkpoint(ast)
    return {"ssast": ours.to(args.device), "ast": ast.to(args.device)}


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _train_step(model: torch.nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> None:
    model.train()
    model.zero_grad(set_to_none=True)
    logits = model(inputs).logits
    torch.nn.functional.cross_entropy(logits, labels).backward()


def _forward(model: torch.nn.Module, inputs: torch.Tensor) -> None:
    model.eval()
    with torch.no_grad():
        model(inputs)


def _timed(function, device: str) -> float:
    _synchronize(device)
    start = time.perf_counter()
    function()
    _synchronize(device)
    return time.perf_counter() - start


def _cuda_peak(function) -> float:
    torch.cuda.reset_peak_memory_stats()
    function()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 2**20


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith(field + ":"))
    return int(line.split()[1]) / 1024


def _cpu_peak(args: argparse.Namespace, stride: int, name: str, step: str) -> float:
    """In a fresh process: how far (MiB) one `step` of model `name` lifts the peak RSS above the built model's RSS."""
    torch.manual_seed(0)
    model = ASTForAudioClassification(_ast_config(args, stride))
    if name == "ssast":
        model = from_original_checkpoint(model)
    inputs, labels = torch.randn(args.batch_size, args.max_length, 128), torch.zeros(args.batch_size, dtype=torch.long)
    # Restart the resident high-water mark (VmHWM) at the built model; ru_maxrss would not do, as Linux carries it over
    # from the parent process across exec.
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    baseline = _status_mib("VmRSS")
    if step == "train":
        _train_step(model, inputs, labels)
    else:
        _forward(model, inputs)
    return _status_mib("VmHWM") - baseline


def _measure_cpu_peak(argv: list[str], stride: int, name: str, step: str) -> float:
    child = ["--child", f"{stride}:{name}:{step}"]
    command = [sys.executable, __file__, *argv, *child]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def _child() -> None:
    args = _parse(sys.argv[1:])
    stride, name, step = args.child.split(":")
    print(_cpu_peak(args, int(stride), name, step))


def _cpu_name() -> str:
    with open("/proc/cpuinfo") as cpuinfo:
        names = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
    return f"{names[0]}, {len(names)} cores" if names else platform.processor()


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="benchmark.py model", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SSAST_SIZES), default="base")
    parser.add_argument("--num-layers", type=int, default=12)
    parser.add_argument("--max-length", type=int, default=1024, help="input frames")
    parser.add_argument("--strides", type=int, nargs="+", default=[10, 16])
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions per model (after one warm-up)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = _parse(argv)
    on_cuda = args.device.startswith("cuda")
    device_name = torch.cuda.get_device_name() if on_cuda else _cpu_name()
    print(
        f"# model benchmark: {args.size}, {args.num_layers} layers, {args.max_length} frames x 128 bins, batch "
        f"{args.batch_size}, {args.repeats} repeats, device {args.device} ({device_name}, "
        f"{torch.get_num_threads()} threads), torch {torch.__version__}"
    )
    print("| stride | tokens | step | SSAST (s) | AST (s) | ratio SSAST/AST | SSAST peak (MiB) | AST peak (MiB) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for stride in args.strides:
        models = _models(args, stride)
        assert models["ast"].config._attn_implementation == "sdpa"
        tokens = models["ssast"].config.num_patches + models["ssast"].config.num_cls_tokens
        generator = torch.Generator().manual_seed(0)
        inputs = torch.randn(args.batch_size, args.max_length, 128, generator=generator).to(args.device)
        labels = torch.randint(10, (args.batch_size,), generator=generator).to(args.device)
        with torch.no_grad():
            logits = {name: model.eval()(inputs).logits for name, model in models.items()}
        difference = (logits["ssast"] - logits["ast"]).abs().max().item()
        if difference > 1e-3:
            raise RuntimeError(f"The two models disagree (max logit difference {difference}): not comparable.")
        steps = {
            "train": partial(_train_step, inputs=inputs, labels=labels),
            "forward": partial(_forward, inputs=inputs),
        }
        times = {(step, name): [] for step in steps for name in models}
        for repeat in range(args.repeats + 1):
            for step, run in steps.items():
                for name, model in models.items():
                    elapsed = _timed(partial(run, model), args.device)
                    if repeat:  # the first round warms up
                        times[step, name].append(elapsed)
        if on_cuda:
            peaks = {
                (step, name): _cuda_peak(partial(run, model))
                for step, run in steps.items()
                for name, model in models.items()
            }
        else:
            del models  # the subprocesses need the memory
            peaks = {
                (step, name): _measure_cpu_peak(argv, stride, name, step)
                for step in steps
                for name in ("ssast", "ast")
            }
        for step in steps:
            ours, theirs = (statistics.median(times[step, name]) for name in ("ssast", "ast"))
            print(
                f"| {stride} | {tokens} | {step} | {ours:.3f} | {theirs:.3f} | {ours / theirs:.3f} | "
                f"{peaks[step, 'ssast']:.0f} | {peaks[step, 'ast']:.0f} |"
            )
    memory = "peak allocated during the step" if on_cuda else "peak RSS rise over the built model (subprocess)"
    print(f"# times: medians in seconds; memory: {memory}")


if __name__ == "__main__":
    _child() if "--child" in sys.argv else main(sys.argv[1:])
