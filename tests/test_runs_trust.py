"""Runs that change under them or stop halfway, each fault made on the spot: a SIGTERM during the first cache build
(its `datasets.map` workers), an error while a progress bar is drawn, an `--output_dir` that is a file, a resume after
the classes or the settings changed, a `splits.json` cut short or edited, and embeddings re-written over a stopped
run. Tiny corpora and models, CPU; the stops and the printed output in real subprocesses."""

import json
import logging
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import one_line_error

from gtzan_hf.commands import convert, crossval, embed, evaluate, finetune, pretrain, probe
from gtzan_hf.data.synthetic import generate_corpus

REPO = Path(__file__).resolve().parents[1]
GENRES = ("blues", "jazz", "rock")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """3 genres x 4 songs of 2.5 s."""
    root = tmp_path_factory.mktemp("corpus")
    generate_corpus(root, songs_per_genre=4, seed=1, duration=2.5, genres=GENRES, num_proc=1)
    return root


# scripts/finetune.py as a user runs it, its filter banks slowed down so that the stop falls inside the cache build
SLOW_CACHE_BUILD = """
import runpy, sys, time
from gtzan_hf import SSASTFeatureExtractor

fbank = SSASTFeatureExtractor.fbank


def slow_fbank(self, waveform):
    time.sleep(1.0)
    return fbank(self, waveform)


SSASTFeatureExtractor.fbank = slow_fbank
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_a_sigterm_during_the_cache_build_ends_the_run_and_its_workers(corpus, tmp_path):
    cache_dir, output_dir = tmp_path / "cache", tmp_path / "run"
    command = [
        sys.executable, "-c", SLOW_CACHE_BUILD, str(REPO / "scripts" / "finetune.py"),
        "--preset", "quickstart", "--dataset", str(corpus), "--output_dir", str(output_dir),
        "--cache_dir", str(cache_dir), "--preprocessing_num_workers", "2", "--split", "kfold", "--num_folds", "3",
    ]  # fmt: skip
    log = tmp_path / "log.txt"  # not a pipe: workers that outlive the run would hold it open
    run = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT)
    parent = psutil.Process(run.pid)
    try:
        workers = []
        for _ in range(1800):  # at most 3 min: the imports and the file checks, on a busy machine
            if run.poll() is not None:
                break
            if list(cache_dir.glob("fbank-*.partial-*")):
                workers = [child for child in parent.children(recursive=True) if child.is_running()]
                if len(workers) >= 2:
                    break
            time.sleep(0.1)
        assert len(workers) >= 2, f"the cache build never ran in worker processes: {log.read_text()[-3000:]}"
        run.send_signal(signal.SIGTERM)  # what `kill PID` and `timeout` send
        run.wait(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
    deadline = time.monotonic() + 20
    alive = workers
    while alive and time.monotonic() < deadline:
        alive = [w for w in alive if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]
        time.sleep(0.2)
    for worker in alive:  # not to leave them to the rest of the suite
        worker.kill()
    assert not alive, f"{len(alive)} of the run's {len(workers)} worker processes outlived it"
    output = log.read_text()
    assert run.returncode == 128 + signal.SIGTERM, output[-3000:]
    assert output.strip().splitlines()[-1] == "stopped: SIGTERM received; the run and its worker processes ended."
    assert not list(cache_dir.glob("fbank-*")), "the partial cache was left behind"
    assert not output_dir.exists(), "the run's lock and folder were left behind"


# A SIGTERM that falls while the run forks (as `datasets.map` starts its workers): Python runs the handler inside an
# at-fork callback, where the exception it raises is only printed, never propagated.
SIGTERM_WHILE_FORKING = """
import os, signal, sys, time
from gtzan_hf.commands.cli import run


def main(argv):
    os.register_at_fork(after_in_parent=lambda: os.kill(os.getpid(), signal.SIGTERM))
    if os.fork() == 0:
        os._exit(0)
    time.sleep(60)  # the run goes on: the stop must still end it
    print("not stopped")


run(main, [])
"""


def test_a_sigterm_that_falls_while_the_run_forks_still_stops_it():
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", SIGTERM_WHILE_FORKING], capture_output=True, text=True, timeout=120)
    assert done.returncode == 128 + signal.SIGTERM, done.stderr[-3000:]
    assert "not stopped" not in done.stdout and time.monotonic() - start < 30
    assert done.stderr.strip().splitlines()[-1] == "stopped: SIGTERM received; the run and its worker processes ended."


@pytest.mark.parametrize("where", ["file", "under a file"])
def test_an_output_dir_that_is_a_file_is_one_line_before_any_work(corpus, tmp_path, where):
    taken = tmp_path / "run.txt"
    taken.write_text("notes")
    output_dir = taken if where == "file" else taken / "run"
    what = f"{output_dir} is a file" if where == "file" else f"{output_dir} lies under {taken}, which is a file"
    common = ["--dataset", str(corpus), "--cache_dir", str(tmp_path / "cache"), "--output_dir", str(output_dir)]
    for main, argv, flag in (
        (finetune.main, ["--preset", "quickstart", *common], "--output_dir"),
        (crossval.main, ["--preset", "quickstart", "--num_folds", "3", *common], "--output_dir"),
        (pretrain.main, ["--preset", "tiny", *common], "--output_dir"),
        (evaluate.main, [str(tmp_path / "model"), *common], "--output_dir"),
        (embed.main, [str(tmp_path / "model"), *common], "--output_dir"),
        (probe.main, [str(tmp_path / "embeddings"), "--output_dir", str(output_dir)], "--output_dir"),
        (convert.main, [str(tmp_path / "model.pth"), str(output_dir)], "OUTPUT_DIR"),
    ):
        message = one_line_error(main, argv)
        assert message == (
            f"error: {flag} {what}: expected a folder to write in (made if missing). Choose another {flag}, or move "
            "the file."
        ), message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.txt"]  # no cache: refused before any work


TINY_FINETUNE = [
    "--preset", "quickstart", "--split", "kfold", "--num_folds", "3", "--max_length", "208", "--crop_seconds", "2",
    "--eval_hop_seconds", "2", "--freq_mask", "0", "--time_mask", "0", "--per_device_train_batch_size", "2",
    "--eval_strategy", "no", "--save_strategy", "steps", "--save_steps", "1", "--save_total_limit", "1",
    "--load_best_model_at_end", "false", "--do_eval", "false", "--eval_segments", "1", "--disable_tqdm", "true",
]  # fmt: skip


@pytest.fixture(scope="module")
def stopped_run(corpus, tmp_path_factory):
    """A fine-tuning run of 2 steps (its checkpoint-2 saved), which asking for 4 steps resumes."""
    workdir = tmp_path_factory.mktemp("stopped-run")
    argv = [*TINY_FINETUNE, "--dataset", str(corpus), "--output_dir", str(workdir / "run")]
    finetune.main([*argv, "--cache_dir", str(workdir / "cache"), "--max_steps", "2"])
    assert (workdir / "run" / "checkpoint-2").is_dir()
    return workdir / "run", argv


def _resume(stopped_run, tmp_path, *flags) -> tuple[Path, list[str]]:
    run, argv = stopped_run
    shutil.copytree(run, tmp_path / "run")
    argv = [*argv[:-1], str(tmp_path / "run"), "--cache_dir", str(tmp_path / "cache"), "--max_steps", "4", *flags]
    return tmp_path / "run", argv


NOT_RESUMED = (
    "Resuming would train it under other settings than its own: run with those it was saved with, or start again "
    "(--overwrite_output_dir) or in another --output_dir."
)


def test_resuming_after_a_class_folder_was_renamed_is_refused_before_any_data(stopped_run, corpus, tmp_path):
    run, argv = _resume(stopped_run, tmp_path)
    (corpus / "blues").rename(corpus / "zblues")
    try:
        message = one_line_error(finetune.main, argv)
    finally:
        (corpus / "zblues").rename(corpus / "blues")
    assert message == (
        f"error: {run / 'checkpoint-2'} cannot be resumed by this run: it was saved with the classes blues, jazz, "
        f"rock, where the dataset now has jazz, rock, zblues (blues is gone; zblues is new). {NOT_RESUMED}"
    )
    assert not (tmp_path / "cache").exists()  # before any data was prepared


@pytest.mark.parametrize(
    "flags, difference",
    [
        (["--model_size", "small"], '--model_size "tiny" (now "small")'),
        (["--model_type", "cnn"], '--model_type "ssast" (now "cnn")'),
        (["--crop_seconds", "1.5"], "--crop_seconds 2.0 (now 1.5)"),
        (["--split", "random"], '--split "kfold" (now "random")'),
        (["--num_hidden_layers", "3", "--label_column", "label"], "--num_hidden_layers 2 (now 3); --label_column"),
    ],
)
def test_resuming_with_another_model_or_data_settings_is_refused_before_any_data(
    stopped_run, tmp_path, flags, difference
):
    run, argv = _resume(stopped_run, tmp_path, *flags)
    message = one_line_error(finetune.main, argv)
    assert message.startswith(
        f"error: {run / 'checkpoint-2'} cannot be resumed by this run: it was saved with {difference}"
    )
    assert message.endswith(NOT_RESUMED) and not (tmp_path / "cache").exists()


def test_a_checkpoint_without_its_runs_record_is_told_apart_by_its_config(stopped_run, tmp_path):
    run, argv = _resume(stopped_run, tmp_path, "--model_size", "small")
    (run / "run_config.json").unlink()  # as a run recorded nothing before its first save
    message = one_line_error(finetune.main, argv)
    assert message.startswith(
        f"error: {run / 'checkpoint-2'} cannot be resumed by this run: it was saved with hidden_size 192 (this run "
        "builds 384). "
    ), message


def test_a_run_resumed_with_the_same_settings_goes_on(stopped_run, tmp_path, caplog):
    run, argv = _resume(stopped_run, tmp_path, "--preprocessing_num_workers", "1")  # how data is prepared may change
    with caplog.at_level(logging.INFO, logger="gtzan_hf.training.resume"):
        finetune.main(argv)
    assert f"Resuming from {run / 'checkpoint-2'}" in [r.getMessage() for r in caplog.records]
    assert json.loads((run / "trainer_state.json").read_text())["global_step"] == 4
