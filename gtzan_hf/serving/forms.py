"""
The CPU serving form of a classifier, chosen by measurement on the machine that serves.

Which form is fastest depends on the CPU (bfloat16 is fast only where it runs natively, int8 kernels differ from one
instruction set to the next) and on the model's size, so [`choose_serving_form`] times the candidates on a few
windows at start-up and keeps the fastest that keeps float32's answers on them (the same top-1 on every window, the
probabilities within [`PROBABILITY_TOLERANCE`]):

- `float32`: the model as trained;
- `bfloat16`: weights and activations in bfloat16, where the CPU has native bfloat16 (AVX512-BF16 or AMX);
- `int8`: Linear layers (but the head) in int8 with int8 activations quantised per token at run time (torchao);
- `onnx`, `onnx-int8`: the graph exported with `torch.onnx` and run by ONNX Runtime, in float32 or with its dynamic
  int8 quantisation of the matrix products; the export's logits are checked against PyTorch's first;

and, for a model that can merge tokens (SSAST's `token_merging`), each of them with token merging (`"<form>+tome"`,
e.g. `onnx-int8+tome`: [`TOKEN_MERGING_SHARE`] of the patches merged in each block), which computes less for nearly
the same answers. Each is timed with one window per forward pass and with [`CALIBRATION_BATCH`], and served at the
faster. The environment variable `GTZAN_HF_SERVING` forces a form (its batch size is still measured),
e.g. `onnx-int8` or `float32` to serve without token merging. `python scripts/benchmark.py space` times every form on
whole songs.
"""

import copy
import importlib.util
import logging
import os
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers.modeling_outputs import SequenceClassifierOutput

from ..errors import UserError
from ..inference.audio import decode_audio
from ..inference.windowing import model_windows
from ..models.feature_extraction_ssast import SSASTFeatureExtractor

logger = logging.getLogger(__name__)

SERVING_ENV = "GTZAN_HF_SERVING"
FORMS = ("float32", "bfloat16", "int8", "onnx", "onnx-int8")
# A form with token merging: its name and this suffix.
TOKEN_MERGING = "+tome"
# Patch tokens merged in each block but the last (`SSASTConfig.token_merging`), as a share of the model's patches:
# SSAST-Base at stride 10 merges 200 of its 1212 in each (at most half of those left). Overlapping patches are
# redundant, but each merge moves the answers a little: with the benchmark's linear-probe head, on 150 windows of
# generated songs, float32 merging 200, 250 and 303 a block kept 99.3, 98.0 and 97.3 % of the window genres in a first
# try; in `python scripts/benchmark.py space` (BENCHMARKS.md, issue 29), 242 kept 96.7 % and 200 kept 97.3 %.
TOKEN_MERGING_SHARE = 0.165
# Calibration windows: the first and the last window of each of the Space's example clips (`examples/`, generated
# music of five genres). Timing them one per pass and `CALIBRATION_BATCH` per pass (`classify_song`'s default) tells
# the batch size; a form is eligible where it keeps float32's answers on all of them.
EXAMPLES_DIR = Path(__file__).parent / "examples"
CALIBRATION_BATCH = 8
# Keeping the answers: the same top-1 as float32 on every calibration window, and window probabilities that move by at
# most this much on average (the largest change among the classes, averaged over the windows): top-1 alone passes a
# form that moves every probability, as long as no calibration window is near a tie. Set from the benchmark's
# SSAST-Base (`python scripts/benchmark.py space`, BENCHMARKS.md, issue 29), between the forms that kept 97 % of its
# test windows' genres (float32+tome and onnx+tome, 97.3 %: 0.005 on these windows) and the int8 forms (94.0 to 96.7 %:
# 0.009 to 0.012). A heuristic, not a measure of agreement: float32+tome merging more (0.007) kept 96.7 %.
PROBABILITY_TOLERANCE = 0.008


def bfloat16_is_native() -> bool:
    """Whether oneDNN runs bfloat16 matrix products natively here (AVX512-BF16 or AMX); elsewhere they are emulated
    and no faster than float32."""
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def form_names() -> list[str]:
    """Every serving form: [`FORMS`], then each with token merging."""
    return [*FORMS, *(name + TOKEN_MERGING for name in FORMS)]


def merges_tokens(model: torch.nn.Module) -> bool:
    """Whether `model` can merge tokens (an SSAST classifier: `config.token_merging`)."""
    return hasattr(model.config, "token_merging")


def available_forms(model: torch.nn.Module | None = None) -> list[str]:
    """
    The forms worth calibrating on this machine, for `model`: each also with token merging where it
    [`merges_tokens`]. torchao's int8 (`int8`) is left out: on AVX2 CPUs it ran 4x slower than float32 (`python
    scripts/benchmark.py space`), and ONNX Runtime's int8 serves the same purpose; it can still be forced, or listed.
    """
    forms = ["float32"]
    if bfloat16_is_native():
        forms.append("bfloat16")
    if importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("onnxscript"):
        forms += ["onnx", "onnx-int8"]
    if model is not None and merges_tokens(model):
        forms += [name + TOKEN_MERGING for name in forms]
    return forms


def with_token_merging(model: torch.nn.Module) -> torch.nn.Module:
    """`model` merging [`TOKEN_MERGING_SHARE`] of its patches in each block but the last: a copy of its modules and
    config, sharing its weights."""
    shared = {id(tensor): tensor for tensor in (*model.parameters(), *model.buffers())}
    model = copy.deepcopy(model, shared)
    model.config.token_merging = max(1, round(TOKEN_MERGING_SHARE * model.config.num_patches))
    return model


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """
    A copy of `model` with its `nn.Linear` layers in int8 (torchao: weights per output channel, activations per
    token at run time), the `classifier` head left in float32: it is a sliver of the compute, and quantising the
    logits' own layer doubles the change of the probabilities. (The CNN's compute is its convolutions: it gains
    little.)
    """
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    model = copy.deepcopy(model)
    quantize_(
        model,
        Int8DynamicActivationInt8WeightConfig(),
        filter_fn=lambda module, name: isinstance(module, torch.nn.Linear) and not name.startswith("classifier"),
    )
    return model


def export_onnx(model: torch.nn.Module, example: torch.Tensor, path: Path) -> Path:
    """
    Export `model` to ONNX at `path` (`torch.onnx`'s dynamo exporter, any batch size) and check the export's logits
    against PyTorch's on `example`, a `(batch, frames, mel_bins)` input of two windows or more (the exporter takes a
    batch of one for a constant). Returns `path`.
    """
    import onnxruntime

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on tracing and on its own deprecations
        torch.onnx.export(
            _Logits(model),
            (example,),
            path,
            input_names=["input_values"],
            output_names=["logits"],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            dynamo=True,
            verbose=False,
        )
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    (exported,) = session.run(None, {"input_values": example.numpy()})
    reference = model(input_values=example).logits
    difference = (torch.from_numpy(exported) - reference).abs().max().item()
    if difference > 1e-3 * reference.abs().max().item():
        raise ValueError(f"the exported graph's logits differ from PyTorch's by {difference:.2g}")
    return path


def quantize_onnx(path: Path) -> Path:
    """
    ONNX Runtime's dynamic int8 quantisation of an exported classifier's MatMuls (the encoder's Linear layers, weights
    per output channel; the head is a Gemm in the export and stays float32), written next to it. Returns its path.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantized = path.with_suffix(".int8.onnx")
    # 7-bit weights (`reduce_range`): on CPUs without VNNI (AVX2 only) ONNX Runtime's u8 x s8 products saturate at
    # full range, which moved a tiny SSAST's logits by 6 % of their range on an AMD EPYC; with them, within 5 %.
    quantize_dynamic(
        path, quantized, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"], per_channel=True,
        reduce_range=True,
    )  # fmt: skip
    return quantized


class OnnxClassifier(torch.nn.Module):
    """
    A classifier exported to ONNX ([`export_onnx`], [`quantize_onnx`]) run by ONNX Runtime, called as the PyTorch
    model is: `model(input_values=(batch, frames, mel_bins)).logits` -> `(batch, num_labels)`.
    """

    def __init__(self, config, path: Path):
        import onnxruntime

        super().__init__()
        self.config = config
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        self.session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def forward(self, input_values: torch.Tensor) -> SequenceClassifierOutput:
        (logits,) = self.session.run(None, {"input_values": input_values.numpy()})
        return SequenceClassifierOutput(logits=torch.from_numpy(logits))


class _Logits(torch.nn.Module):
    """The model as a function of its input alone, returning its logits: what `torch.onnx.export` traces."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        return self.model(input_values=input_values).logits


def build_form(
    name: str, model: torch.nn.Module, example: torch.Tensor, export_dir: str | os.PathLike | None = None
) -> torch.nn.Module:
    """
    The serving form `name` (one of [`form_names`]) of a float32 `model`; `example` is a `(batch, frames, mel_bins)`
    input of two windows or more for the ONNX export. The ONNX forms share the export found in `export_dir`, or
    write it there (default: a temporary folder), so that `onnx` and `onnx-int8` export the model once (and once
    more with token merging).
    """
    if name.endswith(TOKEN_MERGING) and name.removesuffix(TOKEN_MERGING) in FORMS:
        if not merges_tokens(model):
            raise ValueError(f"{type(model).__name__} cannot merge tokens: serve {name.removesuffix(TOKEN_MERGING)}.")
        model, suffix = with_token_merging(model), TOKEN_MERGING
        name = name.removesuffix(TOKEN_MERGING)
    else:
        suffix = ""
    if name == "float32":
        return model
    if name == "bfloat16":
        return copy.deepcopy(model).to(torch.bfloat16)
    if name == "int8":
        return quantize_int8(model)
    if name in ("onnx", "onnx-int8"):
        with tempfile.TemporaryDirectory() as scratch:  # the session holds the graph: the files can go
            path = Path(export_dir or scratch) / f"model{suffix}.onnx"
            if not path.exists():
                export_onnx(model, example, path)
            return OnnxClassifier(model.config, quantize_onnx(path) if name == "onnx-int8" else path)
    raise ValueError(f"Unknown serving form {name + suffix!r}; expected one of {', '.join(form_names())}.")


def calibration_windows(feature_extractor: SSASTFeatureExtractor) -> torch.Tensor:
    """`(2 * clips, max_length, num_mel_bins)` model inputs: the first and the last of the model's windows
    ([`model_windows`]) of each example clip."""
    rate = feature_extractor.sampling_rate
    samples = round(model_windows(feature_extractor).seconds * rate)
    segments = []
    for path in sorted(EXAMPLES_DIR.glob("*.ogg")):
        clip = decode_audio(str(path), rate)
        segments += [clip[:samples], clip[-samples:]]
    return feature_extractor(segments, sampling_rate=rate, return_tensors="pt")["input_values"]


@dataclass
class ServingForm:
    """A form of the classifier to serve, and what calibration measured."""

    name: str
    model: torch.nn.Module
    batch_size: int
    seconds_per_window: float
    probability_change: float = 0.0  # on the calibration windows, as [`PROBABILITY_TOLERANCE`] measures it
    speedup: float = 1.0  # over float32 at `CALIBRATION_BATCH` windows per pass (`classify_song`'s batching)
    calibration_seconds: float = 0.0
    candidates: dict[str, float] = field(default_factory=dict)  # `{"form, batch": seconds per window}` of those timed
    changes: dict[str, float] = field(default_factory=dict)  # `{form: probability change}` of those checked

    def describe(self) -> str:
        """One line for the log and the page."""
        per_pass = "1 window" if self.batch_size == 1 else f"{self.batch_size} windows"
        return (
            f"{self.name}, {per_pass} per pass: {self.speedup:.2f}x the speed of float32, probabilities within "
            f"{self.probability_change:.3f} of float32's on average (measured at start-up, in "
            f"{self.calibration_seconds:.0f} s)"
        )


def _time(model: torch.nn.Module, windows: torch.Tensor, batch_size: int) -> tuple[float, torch.Tensor]:
    """Seconds per window of classifying `windows` `batch_size` at a time, and the logits."""
    dtype = next(model.parameters(), windows).dtype
    start = time.perf_counter()
    logits = torch.cat([model(input_values=batch.to(dtype)).logits.float() for batch in windows.split(batch_size)])
    return (time.perf_counter() - start) / len(windows), logits


def probability_change(probabilities: torch.Tensor, reference: torch.Tensor) -> float:
    """How far window `probabilities` lie from the `reference` ones (both `(windows, num_labels)`): the largest change
    among the classes, averaged over the windows."""
    return (probabilities - reference).abs().amax(-1).mean().item()


@torch.inference_mode()
def choose_serving_form(
    model: torch.nn.Module, feature_extractor: SSASTFeatureExtractor, forms: list[str] | None = None
) -> ServingForm:
    """
    Time each of `forms` (default: [`available_forms`] for `model`, or the one named by `GTZAN_HF_SERVING`) on the
    calibration windows, `CALIBRATION_BATCH` per pass and one per pass, after a warm-up pass; keep the fastest that
    keeps float32's answers (the same top-1 on every window, probabilities within [`PROBABILITY_TOLERANCE`]). A form
    that cannot be built here (a missing package, an export that fails or disagrees) or that changes the answers is
    skipped with a warning; a forced one is served all the same (or fails).
    """
    start = time.perf_counter()
    forced = os.environ.get(SERVING_ENV, "").strip()
    if forced and forced not in form_names():
        raise UserError(f"{SERVING_ENV}={forced!r} is not a serving form; expected one of {', '.join(form_names())}.")
    forms = [forced] if forced else forms or available_forms(model)
    windows = calibration_windows(feature_extractor)
    _time(model, windows[:1], 1)  # warm-up
    reference_time, reference = _time(model, windows, CALIBRATION_BATCH)
    best = None
    timings, changes = {}, {}
    with tempfile.TemporaryDirectory() as export_dir:  # one ONNX export for both ONNX forms
        for name in forms:
            try:
                candidate = build_form(name, model, windows, export_dir)
                _time(candidate, windows[:1], 1)  # warm-up: first-call allocations, kernel choices
                seconds, logits = _time(candidate, windows, CALIBRATION_BATCH)
                changes[name] = change = probability_change(logits.softmax(-1), reference.softmax(-1))
                flips = int((logits.argmax(-1) != reference.argmax(-1)).sum())
                problem = ""
                if flips:
                    problem = f"its top-1 differs from float32 on {flips} of {len(windows)} calibration windows"
                elif change > PROBABILITY_TOLERANCE:
                    problem = f"its probabilities move by {change:.3f} on average, more than {PROBABILITY_TOLERANCE}"
                if problem and not forced:
                    raise UserError(problem)
                if problem:
                    logger.warning("%s=%s is served, although %s", SERVING_ENV, forced, problem)
                timings[f"{name}, {CALIBRATION_BATCH}"] = seconds
                timings[f"{name}, 1"], _ = _time(candidate, windows, 1)
                for batch_size in (CALIBRATION_BATCH, 1):
                    seconds = timings[f"{name}, {batch_size}"]
                    if best is None or seconds < best.seconds_per_window:
                        best = ServingForm(name, candidate, batch_size, seconds, change)
            except Exception as error:  # a form this machine cannot run is not served; a forced one must be
                if forced:
                    raise
                logger.warning("Serving form %s skipped: %s: %s", name, type(error).__name__, error)
    if best is None:  # no candidate could be built here: float32, timed above, always can
        best = ServingForm("float32", model, CALIBRATION_BATCH, reference_time)
    # against float32's own timing among the candidates where it is one: the reference pass above runs first, cold
    best.speedup = timings.get(f"float32, {CALIBRATION_BATCH}", reference_time) / best.seconds_per_window
    best.calibration_seconds = time.perf_counter() - start
    best.candidates, best.changes = timings, changes
    logger.info("Serving %s; seconds per window: %s; probability changes: %s", best.describe(), timings, changes)
    return best
