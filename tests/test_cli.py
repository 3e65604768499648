"""User errors on the command line: one `error:` line saying what was found, what was expected and what to do, exit
status 1, no traceback (`--traceback` shows it), the model checked before any data is prepared, no Hub contact for
a local-looking path, and nothing written for a refused command. The scripts run as subprocesses (all at once, the
imports dominate); the many other cases go through the same `gtzan_hf.commands.cli.run` in this process."""

import os
import pickle
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import one_line_error
from transformers import ASTConfig, ASTForAudioClassification

from gtzan_hf import SSASTConfig, SSASTForAudioClassification
from gtzan_hf.commands import cli, convert, embed, finetune, pretrain
from gtzan_hf.commands import evaluate as evaluation
from gtzan_hf.commands.cli import run
from gtzan_hf.data import DataConfig
from gtzan_hf.data.synthetic import generate_corpus
from gtzan_hf.models.checkpoints import safe_model_weights

REPO = Path(__file__).resolve().parents[1]


class NotPickledByTorch:
    """A class whose instance in a checkpoint makes the safe loader refuse it."""


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Damaged, foreign and garbage inputs, and a small corpus to prepare data from."""
    root = tmp_path_factory.mktemp("inputs")
    (root / "empty.pth").write_bytes(b"")
    torch.save({"weights": NotPickledByTorch()}, root / "pickled-object.pth")
    sf.write(root / "song-renamed.pth", np.zeros(1600, np.float32), 16000, format="WAV")
    torch.save({"encoder.weight": torch.zeros(2)}, root / "foreign.pth")
    torch.save({"v.pos_embed": torch.zeros(1, 3, 8)}, root / "cut-short.pth")
    (root / "list-config").mkdir()
    (root / "list-config" / "config.json").write_text("[1, 2]")
    # Saved model folders whose weights (pytorch_model.bin, read when there is no model.safetensors) pickle an object.
    tiny = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
    SSASTForAudioClassification(SSASTConfig(max_length=128, **tiny)).save_pretrained(root / "pickled-weights")
    ASTForAudioClassification(ASTConfig(max_length=128, **tiny)).save_pretrained(root / "pickled-ast-weights")
    for folder in ("pickled-weights", "pickled-ast-weights"):
        (root / folder / "model.safetensors").unlink()
        torch.save({"weights": NotPickledByTorch()}, root / folder / "pytorch_model.bin")
    (root / "garbage.yaml").write_text("learning_rate: [1,\n  : : :\n")
    (root / "list.yaml").write_text("- learning_rate\n- 1\n")
    generate_corpus(root / "corpus", songs_per_genre=2, seed=0, duration=1.0, genres=("blues", "jazz"), num_proc=1)
    (root / "runs").mkdir()
    return root


def _finetune(files, workdir, *argv):
    common = ["--preset", "quickstart", "--dataset", str(files / "corpus"), "--output_dir", str(workdir / "out")]
    return [*common, "--cache_dir", str(workdir / "cache"), *argv]


def _pretrain(files, workdir, *argv):
    common = ["--preset", "tiny", "--dataset", str(files / "corpus"), "--output_dir", str(workdir / "out")]
    return [*common, "--cache_dir", str(workdir / "cache"), *argv]


# (file given as the starting model, what the message must say: what was found, expected, what to do)
BAD_MODELS = [
    ("empty.pth", ["is empty (0 bytes)", "download or copy the checkpoint again", "Expected a .pth state dict"]),
    (
        "pickled-object.pth",
        ["was refused", "Unsupported global: GLOBAL", "NotPickledByTorch", "save its tensors alone"],
    ),
    ("song-renamed.pth", ["Could not read", "begins with b'RIFF", "check that it is the right file"]),
    ("foreign.pth", ["found keys encoder.weight", "Expected an original SSAST", "check that this is the checkpoint"]),
    ("list-config", ["config.json of", "holds a list", "expected a mapping", "Save the model again"]),
    ("missing.pth", ["not found", "pass the path of a .pth file or a released name", "SSAST-Base-Patch-400"]),
    ("./no-such-folder", ["no such file or folder", "Check the path"]),
    ("corpus", ["folder without config.json", "expected a saved model folder", "Check the path"]),
    (
        "pickled-weights",
        ["pickled-weights/pytorch_model.bin was refused", "Unsupported global: GLOBAL", "NotPickledByTorch"],
    ),
]


@pytest.mark.parametrize("name, says", BAD_MODELS, ids=[name for name, _ in BAD_MODELS])
def test_a_bad_starting_model_is_refused_in_one_line_before_the_data(files, tmp_path, name, says):
    model = name if name.startswith("./") else str(files / name)
    message = one_line_error(finetune.main, _finetune(files, tmp_path, "--model_name_or_path", model))
    assert all(part in message for part in says), message
    assert "weights_only=False" not in message
    assert not any(tmp_path.iterdir())  # refused before the data: no cache, no output


@pytest.mark.parametrize(
    "name", ["empty.pth", "pickled-object.pth", "cut-short.pth", "list-config", "corpus", "pickled-weights"]
)
def test_pretraining_refuses_a_bad_starting_model_before_the_data(files, tmp_path, name):
    message = one_line_error(pretrain.main, _pretrain(files, tmp_path, "--model_name_or_path", str(files / name)))
    assert "xpected" in message, message
    assert not any(tmp_path.iterdir())


def test_the_converter_and_the_evaluator_refuse_bad_inputs_in_one_line(files, tmp_path):
    for name, says in BAD_MODELS[:5]:
        message = one_line_error(convert.main, [str(files / name), str(tmp_path / "converted")])
        assert all(part in message for part in says), message
    assert not (tmp_path / "converted").exists()
    message = one_line_error(convert.main, [str(files / "pickled-ast-weights"), str(tmp_path / "converted")])
    assert "pickled-ast-weights/pytorch_model.bin was refused" in message and "weights_only" not in message
    for model, says in [
        (files / "list-config", "holds a list"),
        (files / "empty.pth", "is an original SSAST/AST checkpoint file; expected a trained classifier"),
        (files / "corpus", "folder without config.json"),
        (files / "pickled-weights", "pytorch_model.bin was refused: it holds Python objects that could run code"),
    ]:
        argv = [str(model), "--dataset", str(files / "corpus"), "--output_dir", str(tmp_path / "evaluation")]
        assert says in one_line_error(evaluation.main, [*argv, "--cache_dir", str(tmp_path / "cache")])
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "argv, says",
    [
        (["--config", "garbage.yaml"], ["garbage.yaml is not valid YAML", "line 2", "expected a mapping"]),
        (["--config", "list.yaml"], ["list.yaml holds a list", "expected a mapping", "gtzan_hf/configs/"]),
        (["--config", "absent.yaml"], ["absent.yaml not found", "check the path"]),
        (["--learnin_rate", "1e-3"], ["unrecognized arguments: --learnin_rate 1e-3", "`--help` lists"]),
        (["--num_train_epochs", "many"], ["invalid float value: 'many'", "`--help` lists"]),
        (["--preset", "quickstrt"], ["invalid choice: 'quickstrt'", "'quickstart'"]),
        (["--split", "kfold", "--num_folds", "5"], ["5 folds", "as many folds as songs (4)", "choose --num_folds"]),
        (["--split", "random"], ["Cannot split 4 songs of 2 classes", "add songs, or use split='kfold'"]),
    ],
)
def test_bad_flags_configs_and_splits_are_one_line(files, tmp_path, argv, says):
    argv = [str(files / a) if a.endswith(".yaml") else a for a in argv]
    message = one_line_error(finetune.main, _finetune(files, tmp_path, *argv))
    assert all(part in message for part in says), message


# A typo in a closed set is refused as the arguments are parsed (the dataclasses type their choices); what the
# arguments alone decide is refused before any data work.
REFUSED_BEFORE_THE_DATA = [
    (["--model_type", "resnet"], "invalid choice: 'resnet' (choose from 'ssast', 'cnn')"),
    (["--model_size", "huge"], "invalid choice: 'huge' (choose from 'tiny', 'small', 'base')"),
    (["--pooling", "max"], "argument --pooling: invalid choice: 'max' (choose from 'mean', 'cls', 'stats')"),
    (["--split", "kfolds"], "argument --split: invalid choice: 'kfolds' (choose from 'auto', 'dataset', 'random'"),
    (["--crop_strategy", "crop"], "invalid choice: 'crop' (choose from 'random-crop', 'static')"),
    (["--spec_augment_axes", "swaped"], "invalid choice: 'swaped' (choose from 'standard', 'swapped')"),
    (["--lr_scheduler_type", "cosin"], "invalid choice: 'cosin' (choose from 'linear', 'cosine'"),
    (["--config", "pooling.yaml"], 'sets pooling: "max"; expected one of "mean", "cls", "stats". Correct it there.'),
    (["--patch_time", "600"], "no valid model (--model_type, --model_size, --num_hidden_layers, --patch_*"),
    (["--patch_time", "600"], "patch_time (600) must lie in [1, max_length=512]"),
    (["--lr_schedule_per_epoch", "true", "--max_steps", "5"], "counts epochs: set --num_train_epochs"),
    (["--split", "kfold", "--num_folds", "5", "--fold", "5"], "fold must be in [0, 5), got 5"),
    (["--split", "kfold", "--num_folds", "2"], "it needs 3 folds or more"),
    (["--test_size", "0.95"], "together below 1"),
    (["--crop_seconds", "20"], "A 20 s window is 2000 frames; this model reads at most 512 frames"),
]


@pytest.mark.parametrize("argv, says", REFUSED_BEFORE_THE_DATA, ids=[" ".join(a) for a, _ in REFUSED_BEFORE_THE_DATA])
def test_typos_and_what_the_arguments_decide_are_refused_before_any_data_work(tmp_path, argv, says):
    """The quickstart with its generated corpus not written yet: a refused command never writes it (nor a cache,
    nor an output folder)."""
    (tmp_path / "pooling.yaml").write_text("pooling: max\n")
    argv = [str(tmp_path / a) if a.endswith(".yaml") else a for a in argv]
    work = tmp_path / "work"
    common = ["--preset", "quickstart", "--generated_corpus_dir", str(work / "corpus"), "--output_dir", str(work)]
    message = one_line_error(finetune.main, [*common, "--cache_dir", str(work / "cache"), *argv])
    assert says in message, message
    assert not work.exists()


@pytest.mark.parametrize(
    "main, argv, says",
    [
        (pretrain.main, ["--preset", "tiny", "--model_size", "bigger"], "invalid choice: 'bigger' (choose from"),
        (embed.main, ["MODEL", "--pooling", "patch"], "argument --pooling: invalid choice: 'patch'"),
        (embed.main, ["MODEL", "--split", "kfold", "--num_folds", "2"], "it needs 3 folds or more"),
    ],
)
def test_the_other_commands_refuse_typos_as_they_parse(tmp_path, main, argv, says):
    work = tmp_path / "work"
    common = ["--generated_corpus_dir", str(work / "corpus"), "--output_dir", str(work)]
    message = one_line_error(main, [*argv, *common, "--cache_dir", str(work / "cache")])
    assert says in message, message
    assert not work.exists()


def test_the_quickstart_never_generates_into_a_mistyped_dataset_path(files, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["--preset", "quickstart", "--dataset", "data/generated-gtzn", "--output_dir", "run"]
    (tmp_path / "data").mkdir()  # `data/...` is then a local path, not a Hub id
    message = one_line_error(finetune.main, argv)
    assert "--dataset data/generated-gtzn: no such file or folder" in message
    assert [p.name for p in tmp_path.iterdir()] == ["data"] and not any((tmp_path / "data").iterdir())


class CountingHub(BaseHTTPRequestHandler):
    """A Hub that has nothing, and counts who asked."""

    requests: list[str] = []

    def _answer(self):
        CountingHub.requests.append(self.path)
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD = _answer

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def scripts(files):
    """Each script run once on a user error, all at once, against a Hub on 127.0.0.1 that counts its requests:
    `{name: (CompletedProcess-like result, Hub requests that named the input)}`."""
    hub = ThreadingHTTPServer(("127.0.0.1", 0), CountingHub)
    thread = threading.Thread(target=hub.serve_forever, daemon=True)
    thread.start()
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "PYTHONPATH")}
    env |= {
        "HF_ENDPOINT": f"http://127.0.0.1:{hub.server_port}",
        "PYTHONPATH": str(REPO),
        "HF_HOME": str(files / "hf"),
    }
    commands = {
        "finetune": ["finetune.py", "--preset", "quickstart", "--dataset", "data/generated-gtzn", "--output_dir", "o"],
        "pretrain": ["pretrain.py", "--preset", "tiny", "--model_name_or_path", "runs/ssast-tiny"],
        "evaluate": ["evaluate_model.py", str(files / "list-config"), "--dataset", str(files / "corpus")],
        "convert": ["convert_ssast_checkpoint.py", str(files / "empty.pth"), "converted"],
        "hub id": ["evaluate_model.py", "someone/no-such-model", "--dataset", str(files / "corpus")],
    }  # fmt: skip
    workdirs = {name: files / "cwd" / name.replace(" ", "-") for name in commands}
    processes = {}
    for name, (script, *argv) in commands.items():
        (workdirs[name] / "data").mkdir(parents=True)
        (workdirs[name] / "runs").mkdir()
        processes[name] = subprocess.Popen(
            [sys.executable, str(REPO / "scripts" / script), *argv],
            cwd=workdirs[name],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    results = {}
    try:
        for name, process in processes.items():
            _, stderr = process.communicate(timeout=300)
            results[name] = (process.returncode, stderr, workdirs[name])
    finally:
        for process in processes.values():
            process.kill()
        hub.shutdown()
    return results, CountingHub.requests


@pytest.mark.parametrize(
    "name, says",
    [
        ("finetune", "--dataset data/generated-gtzn: no such file or folder. Check the path"),
        ("pretrain", "--model_name_or_path runs/ssast-tiny: no such file or folder. Check the path"),
        ("evaluate", "holds a list; expected a mapping of model settings"),
        ("convert", "is empty (0 bytes): download or copy the checkpoint again"),
    ],
)
def test_each_script_reports_a_user_error_in_one_line_and_asks_no_hub(scripts, name, says):
    results, hub_requests = scripts
    returncode, stderr, workdir = results[name]
    assert returncode == 1, stderr[-3000:]
    assert "Traceback" not in stderr and "huggingface.co" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and says in errors[0] and stderr.rstrip().endswith(errors[0]), stderr[-3000:]
    assert not [path for path in hub_requests if "generated-gtzn" in path or "ssast-tiny" in path]
    assert sorted(p.name for p in workdir.iterdir()) == ["data", "runs"]  # nothing written
    assert not any((workdir / "data").iterdir()) and not any((workdir / "runs").iterdir())


def test_a_hub_id_is_asked_for_and_its_absence_is_one_line(scripts):
    results, hub_requests = scripts
    returncode, stderr, _ = results["hub id"]
    assert any("no-such-model" in path for path in hub_requests)  # the counting Hub is the one asked
    assert returncode == 1 and "Traceback" not in stderr and stderr.rstrip().splitlines()[-1].startswith("error:")


def test_weights_refused_as_they_are_read_are_one_line_without_torchs_advice(files):
    def main(argv):  # as from_pretrained reads the weights of a Hub model, past the checks of local folders
        with safe_model_weights("someone/model"):
            torch.load(files / "pickled-weights" / "pytorch_model.bin", weights_only=True)

    message = one_line_error(main, [])
    assert "A PyTorch weights file of someone/model was refused" in message
    assert "GLOBAL test_cli.NotPickledByTorch" in message
    assert "weights_only" not in message and "save_pretrained" in message


@pytest.mark.parametrize(
    "fault", [ValueError("a bug"), OSError("a bug"), pickle.UnpicklingError("a bug")], ids=lambda e: type(e).__name__
)
def test_a_fault_keeps_its_traceback(fault):
    """Only a `UserError` is one line: a `ValueError` or an `OSError` raised inside a command is a fault."""

    def main(argv):
        raise fault

    with pytest.raises(type(fault), match="a bug"):
        run(main, [])


def test_traceback_flag_shows_the_error_itself(files, tmp_path):
    with pytest.raises(ValueError, match="is empty"):
        run(convert.main, [str(files / "empty.pth"), str(tmp_path / "converted"), "--traceback"])
    with pytest.raises(ValueError, match="holds a list"):
        run(
            finetune.main,
            _finetune(files, tmp_path, "--model_name_or_path", str(files / "list-config"), "--traceback"),
        )


@pytest.mark.parametrize(
    "config, says",
    [
        ("num_train_epochs: [1, 2]", "sets num_train_epochs: [1, 2]; expected a number. Correct it there."),
        ("per_device_train_batch_size: 16.5", "sets per_device_train_batch_size: 16.5; expected an integer."),
        ("learning_rate: true", "sets learning_rate: true; expected a number."),
        ("lr_scheduler_type: cosin", 'sets lr_scheduler_type: "cosin"; expected one of "linear", "cosine", '),
        ("label_names: labels", 'sets label_names: "labels"; expected a list (each a string) or null.'),
        ("do_train: maybe", 'sets do_train: "maybe"; expected true or false.'),
        ("eval_segments: {three: 3}", 'sets eval_segments: {"three": 3}; expected an integer or null.'),
        ("num_train_epochs: null", "sets num_train_epochs: null; expected a number."),
    ],
)
def test_a_config_value_of_the_wrong_type_is_one_line_before_any_work(files, tmp_path, config, says):
    path = tmp_path / "run.yaml"
    path.write_text(config + "\n")
    message = one_line_error(finetune.main, _finetune(files, tmp_path / "work", "--config", str(path)))
    assert message.startswith(f"error: Config file {path} {says}"), message
    assert not (tmp_path / "work").exists()  # no corpus, cache or output


def test_config_values_that_fit_their_fields_are_accepted(tmp_path):
    """An integer for a float, null for an optional field, YAML's `1.0e-3` (a float) and `1e-3` (a string), a
    mapping, an enum's value, a list of strings, a number or a switch as a string."""
    path = tmp_path / "run.yaml"
    path.write_text(
        "num_train_epochs: 3\nhead_learning_rate: null\nlearning_rate: 1.0e-3\nweight_decay: 1e-2\n"
        "lr_scheduler_kwargs: {mode: max}\neval_strategy: epoch\nlabel_names: [labels, song_index]\n"
        "crop_seconds: 5\nseed: '7'\ndo_predict: 'no'\n"
    )
    _, data_config, training_args, _ = finetune.parse_finetune_args(
        ["--config", str(path), "--output_dir", str(tmp_path)]
    )
    assert (training_args.num_train_epochs, training_args.head_learning_rate) == (3, None)
    assert (training_args.learning_rate, training_args.weight_decay) == (1e-3, 1e-2)
    assert training_args.lr_scheduler_kwargs == {"mode": "max"} and training_args.eval_strategy == "epoch"
    assert training_args.label_names == ["labels", "song_index"] and data_config.crop_seconds == 5
    assert (training_args.seed, training_args.do_predict) == (7, False)


def test_presets_and_saved_settings_are_checked_too(tmp_path, monkeypatch):
    (tmp_path / "finetune").mkdir()
    (tmp_path / "finetune" / "broken.yaml").write_text("num_train_epochs: [1, 2]\n")
    monkeypatch.setattr(cli, "CONFIGS_DIR", tmp_path)
    with pytest.raises(ValueError) as raised:
        finetune.parse_finetune_args(["--preset", "broken", "--output_dir", str(tmp_path)])
    assert str(raised.value).startswith(
        f"Preset broken ({tmp_path / 'finetune' / 'broken.yaml'}) sets num_train_epochs: [1, 2]; expected a number."
    )
    with pytest.raises(ValueError) as raised:  # a run's run_config.json, read back by evaluate_model.py
        cli.parse_args((DataConfig,), [], defaults={"eval_segments": "three"})
    assert str(raised.value) == (
        'The run\'s saved configuration sets eval_segments: "three"; expected an integer or null. Correct it there.'
    )
