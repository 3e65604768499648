"""Faults made on the spot: a damaged or half-built fbank cache, audio far beyond full scale, checkpoints left
half-written by a killed save or holding pickled objects, a finished run started again, two runs on one output
folder, a run killed while it held its folder, a full disk. Tiny corpora (2.5 s songs) and tiny models, CPU."""

import errno
import fcntl
import json
import logging
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import soundfile as sf
import torch
from conftest import one_line_error
from filelock import FileLock
from safetensors import SafetensorError
from transformers import TrainerCallback

from gtzan_hf import SSASTFeatureExtractor
from gtzan_hf.commands import finetune, pretrain
from gtzan_hf.commands.finetune import parse_finetune_args, run_finetune
from gtzan_hf.commands.pretrain import (
    ORIGINAL_CHECKPOINT_NAME,
    parse_pretrain_args,
    run_pretrain,
)
from gtzan_hf.data import build_fbank_cache, load_corpus
from gtzan_hf.data.config import PretrainingDataConfig
from gtzan_hf.data.pretraining import cached_crops
from gtzan_hf.data.synthetic import generate_corpus
from gtzan_hf.inference.audio import samples_problem
from gtzan_hf.models.feature_extraction_ssast import MAX_AMPLITUDE
from gtzan_hf.serving.demo import DemoError, load_recording
from gtzan_hf.training.output_dir import (
    LOCK_NAME,
    DiskFullError,
    RunInUseError,
    RunLock,
    full_disk_reported,
)
from gtzan_hf.training.resume import is_complete_checkpoint, resume_checkpoint

REPO = Path(__file__).resolve().parents[1]
GENRES = ("blues", "jazz", "rock")
SONGS_PER_GENRE = 4  # 12 songs: two record batches of the cache file (8 rows each)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    generate_corpus(root, songs_per_genre=SONGS_PER_GENRE, seed=1, duration=2.5, genres=GENRES, num_proc=1)
    return root


@pytest.fixture
def extractor():
    return SSASTFeatureExtractor(num_mel_bins=32, max_length=128)


def _cache(corpus, extractor, cache_dir, label_column="label"):
    songs = load_corpus(corpus, label_column=label_column, num_proc=1, cache_dir=cache_dir)
    return songs, build_fbank_cache(songs, extractor, num_proc=1, cache_dir=cache_dir)


def _cut_mid_record(path: Path) -> None:
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size * 3 // 4)


def _cut_after_first_record(path: Path) -> None:
    """Cut where a record batch ends: the file stays a valid Arrow stream, with fewer rows (what a copy or a disk
    that stopped between two writes leaves)."""
    with pa.OSFile(str(path)) as source:
        pa.ipc.open_stream(source).read_next_batch()
        end = source.tell()
    with open(path, "r+b") as handle:
        handle.truncate(end)


def _garbage_header(path: Path) -> None:
    with open(path, "r+b") as handle:
        handle.write(np.random.default_rng(0).bytes(512))


def _frames_disagree_with_bytes(path: Path) -> None:
    """Rewrite the file as a valid stream whose `num_frames` say one frame more than each fbank holds."""
    table = pa.ipc.open_stream(path.read_bytes()).read_all()  # a copy: the file is rewritten below
    column = table.schema.get_field_index("num_frames")
    frames = pa.compute.add(table.column(column), pa.scalar(1, pa.int32()))
    table = table.set_column(column, table.schema.field(column), frames)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)


@pytest.mark.parametrize(
    "damage", [_cut_mid_record, _cut_after_first_record, _garbage_header, _frames_disagree_with_bytes]
)
def test_a_damaged_cache_is_rebuilt_whole_with_a_warning(corpus, extractor, tmp_path, caplog, damage):
    songs, fbanks = _cache(corpus, extractor, tmp_path)
    expected = [bytes(fbank) for fbank in fbanks["fbank"]]
    (folder,) = tmp_path.glob("fbank-*")
    (arrow,) = folder.glob("*.arrow")
    del fbanks  # its memory map
    damage(arrow)

    with caplog.at_level(logging.WARNING, logger="gtzan_hf.data.cache"):
        rebuilt = build_fbank_cache(songs, extractor, num_proc=1, cache_dir=tmp_path)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(folder) in warnings[0] and "building it again" in warnings[0]
    assert len(rebuilt) == len(songs.songs) == len(GENRES) * SONGS_PER_GENRE
    assert list(rebuilt["song_id"]) == list(songs.songs["song_id"])
    assert [bytes(fbank) for fbank in rebuilt["fbank"]] == expected

    caplog.clear()  # the rebuilt cache is whole: read back as it is
    with caplog.at_level(logging.WARNING, logger="gtzan_hf.data.cache"):
        again = build_fbank_cache(songs, extractor, num_proc=1, cache_dir=tmp_path)
    assert not caplog.records and [f["filename"] for f in again.cache_files] == [str(arrow)]


def test_a_cache_built_by_several_processes_is_checked_whole(corpus, extractor, tmp_path, caplog):
    songs = load_corpus(corpus, num_proc=1, cache_dir=tmp_path)
    fbanks = build_fbank_cache(songs, extractor, num_proc=2, cache_dir=tmp_path)
    shards = sorted(Path(f["filename"]) for f in fbanks.cache_files)
    assert len(shards) == 2 and list(fbanks["song_id"]) == list(songs.songs["song_id"])
    del fbanks
    shards[1].unlink()  # the second process's share lost
    with caplog.at_level(logging.WARNING, logger="gtzan_hf.data.cache"):
        rebuilt = build_fbank_cache(songs, extractor, num_proc=2, cache_dir=tmp_path)
    assert any("6 songs instead of 12" in r.getMessage() for r in caplog.records)
    assert list(rebuilt["song_id"]) == list(songs.songs["song_id"])


def test_pretraining_crops_come_from_every_song_after_a_damaged_cache(corpus, extractor, tmp_path, caplog):
    data_args = PretrainingDataConfig(dataset=str(corpus), cache_dir=str(tmp_path), preprocessing_num_workers=1)
    assert len(cached_crops(data_args, extractor, compute_stats=False)) == len(GENRES) * SONGS_PER_GENRE
    (arrow,) = tmp_path.glob("fbank-*/*.arrow")
    _cut_after_first_record(arrow)
    with caplog.at_level(logging.WARNING, logger="gtzan_hf.data.cache"):
        crops = cached_crops(data_args, extractor, compute_stats=False)
    assert any("8 songs instead of 12" in r.getMessage() for r in caplog.records)
    assert len(crops) == len(GENRES) * SONGS_PER_GENRE
    assert torch.isfinite(torch.as_tensor(crops[11]["input_values"])).all()


KILLED_BUILD = """
import sys, time
from pathlib import Path
from gtzan_hf import SSASTFeatureExtractor
from gtzan_hf.training.resume import is_complete_checkpoint, resume_checkpoint
from gtzan_hf.data import build_fbank_cache, load_corpus

corpus_dir, cache_dir, started = sys.argv[1:]


class Stalling(SSASTFeatureExtractor):
    calls = 0

    def fbank(self, waveform):
        Stalling.calls += 1
        if Stalling.calls == 10:  # the first 8 songs are written: the build is half done
            Path(started).touch()
            time.sleep(60)
        return super().fbank(waveform)


songs = load_corpus(corpus_dir, num_proc=1, cache_dir=cache_dir)
build_fbank_cache(songs, Stalling(num_mel_bins=32, max_length=128), num_proc=1, cache_dir=cache_dir)
"""


def test_a_killed_build_leaves_nothing_once_the_next_one_ran(corpus, extractor, tmp_path):
    started = tmp_path / "started"
    cache_dir = tmp_path / "cache"
    process = subprocess.Popen([sys.executable, "-c", KILLED_BUILD, str(corpus), str(cache_dir), str(started)])
    try:
        for _ in range(600):  # at most 60 s
            if started.exists() or process.poll() is not None:
                break
            time.sleep(0.1)
        assert started.exists(), "the build never reached its 10th song"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    (partial,) = cache_dir.glob("fbank-*.partial-*")  # what the kill left: the half-written datasets file
    assert [p.name for p in partial.iterdir() if p.name.startswith("tmp")]
    assert not [p for p in cache_dir.glob("fbank-*") if p != partial]

    # a build under way in another process (its lock held) is left alone
    busy = cache_dir / "fbank-0123456789abcdef.partial-busy"
    busy.mkdir()
    with FileLock(busy / ".lock"):
        songs, fbanks = _cache(corpus, extractor, cache_dir)
        assert busy.is_dir()
    assert not partial.exists()
    assert len(fbanks) == len(songs.songs)
    assert sorted(p.name for p in cache_dir.iterdir() if p != busy) == sorted(
        [Path(fbanks.cache_files[0]["filename"]).parent.name, *[p.name for p in cache_dir.glob("check-*")]]
    )


def test_an_interrupted_build_removes_its_partial_folder(corpus, tmp_path):
    class Failing(SSASTFeatureExtractor):
        calls = 0

        def fbank(self, waveform):
            Failing.calls += 1
            if Failing.calls == 10:
                raise KeyboardInterrupt
            return super().fbank(waveform)

    songs = load_corpus(corpus, num_proc=1, cache_dir=tmp_path)
    with pytest.raises(KeyboardInterrupt):
        build_fbank_cache(songs, Failing(num_mel_bins=32, max_length=128), num_proc=1, cache_dir=tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [p.name for p in tmp_path.glob("check-*")]


def test_the_peak_bound_keeps_features_finite(extractor):
    noise = np.random.default_rng(0).uniform(-1, 1, (16000, 1)).astype(np.float32)
    at_bound = noise / np.abs(noise).max() * MAX_AMPLITUDE
    assert samples_problem(at_bound, 16000) == ""
    assert torch.isfinite(extractor.fbank(torch.from_numpy(at_bound[:, 0]))).all()
    # finite samples far past the bound overflow the power spectrum: the extractor and the file checks refuse them
    huge = noise * 1e20
    with pytest.raises(ValueError, match="far beyond full scale"):
        extractor.fbank(torch.from_numpy(huge[:, 0]))
    assert samples_problem(huge, 16000).startswith("corrupt: peak amplitude 1e+20")
    assert samples_problem(noise * 2 * MAX_AMPLITUDE, 16000).startswith("corrupt")


TINY_FINETUNE = [
    "--preset", "quickstart",
    "--split", "kfold", "--num_folds", "3",  # 4 songs per genre: one per split and class at least
    "--num_train_epochs", "1",
    "--crop_seconds", "2", "--eval_hop_seconds", "2", "--max_length", "208",
    "--freq_mask", "0", "--time_mask", "0",
    "--per_device_train_batch_size", "4",
    "--logging_strategy", "steps", "--logging_steps", "1",
    "--disable_tqdm", "true",
]  # fmt: skip


def test_a_file_far_beyond_full_scale_is_skipped_named_and_never_reaches_training(corpus, tmp_path, caplog):
    songs = tmp_path / "songs"
    shutil.copytree(corpus, songs)
    huge = songs / "rock" / "rock.huge.wav"
    noise = np.random.default_rng(0).uniform(-1, 1, 16000 * 2).astype(np.float32)
    sf.write(huge, noise * 1e20, 16000, subtype="FLOAT")
    assert np.abs(sf.read(huge, dtype="float32")[0]).max() > 1e19  # stored as written: finite, huge

    output_dir = tmp_path / "run"
    arguments = [
        *TINY_FINETUNE,
        "--dataset",
        str(songs),
        "--output_dir",
        str(output_dir),
        "--cache_dir",
        str(tmp_path),
    ]
    with caplog.at_level(logging.WARNING):
        metrics = run_finetune(*parse_finetune_args(arguments)[:3])
    assert any("rock.huge" in r.getMessage() and "peak amplitude" in r.getMessage() for r in caplog.records)
    splits = json.loads((output_dir / "splits.json").read_text())
    (skipped,) = splits["skipped"]
    assert skipped["song_id"] == "rock.huge" and skipped["reason"].startswith("corrupt: peak amplitude 1e+20")
    assert sum(splits["num_songs"].values()) == len(GENRES) * SONGS_PER_GENRE
    state = json.loads((output_dir / "trainer_state.json").read_text())
    losses = [entry["loss"] for entry in state["log_history"] if "loss" in entry]
    assert losses and all(math.isfinite(loss) and loss > 0 for loss in losses)
    assert all(math.isfinite(metrics[split]["clip_accuracy"]) for split in ("validation", "test"))
    mean, std = (json.loads((output_dir / "preprocessor_config.json").read_text())[k] for k in ("mean", "std"))
    assert math.isfinite(mean) and math.isfinite(std) and std > 0  # the corpus statistics (dataset_stats)

    with pytest.raises(DemoError, match="rock.huge.wav cannot be classified: corrupt: peak amplitude"):
        load_recording(huge)  # the Space refuses it too

    caplog.clear()  # the same command again: the run is finished, nothing is redone
    before = {p.name: p.stat().st_mtime_ns for p in output_dir.iterdir()}
    with caplog.at_level(logging.WARNING, logger="gtzan_hf.training.resume"):
        assert run_finetune(*parse_finetune_args(arguments)[:3]) is None
    assert any("holds a finished run" in r.getMessage() for r in caplog.records)
    assert {p.name: p.stat().st_mtime_ns for p in output_dir.iterdir()} == before


class StepRecorder(TrainerCallback):
    def __init__(self):
        self.steps = []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)


STEPS = 4


def _pretrain(corpus, workdir, output_dir, *extra, callbacks=None):
    arguments = parse_pretrain_args(
        [
            "--preset", "tiny",
            "--dataset", str(corpus),
            "--cache_dir", str(workdir / "cache"),
            "--output_dir", str(output_dir),
            "--max_length", "128", "--num_masked_patches", "16",
            "--per_device_train_batch_size", "4",
            "--max_steps", str(STEPS), "--save_steps", "2", "--save_total_limit", "3", "--logging_steps", "1",
            "--warmup_steps", "0", "--disable_tqdm", "true",
            *extra,
        ]
    )  # fmt: skip
    return run_pretrain(*arguments, callbacks=callbacks)


@pytest.fixture(scope="module")
def pretrained(corpus, tmp_path_factory):
    """A finished tiny pretraining run of STEPS steps, checkpoints at steps 2 and 4."""
    workdir = tmp_path_factory.mktemp("pretrain")
    _pretrain(corpus, workdir, workdir / "run")
    return workdir


def _killed_run(pretrained, tmp_path, damage) -> Path:
    """A copy of the finished run as a run killed while saving its last checkpoint: no final files, the last
    checkpoint damaged."""
    run = tmp_path / "run"
    shutil.copytree(pretrained / "run", run, ignore=shutil.ignore_patterns("checkpoint-*"))
    for name in (ORIGINAL_CHECKPOINT_NAME, "trainer_state.json", "model.safetensors"):
        (run / name).unlink()
    for step in (2, STEPS):
        shutil.copytree(pretrained / "run" / f"checkpoint-{step}", run / f"checkpoint-{step}")
    damage(run / f"checkpoint-{STEPS}")
    return run


def _truncate_weights(checkpoint: Path) -> None:
    weights = checkpoint / "model.safetensors"
    with open(weights, "r+b") as handle:
        handle.truncate(weights.stat().st_size // 2)


def _drop_trainer_state(checkpoint: Path) -> None:
    (checkpoint / "trainer_state.json").unlink()


@pytest.mark.parametrize("damage", [_truncate_weights, _drop_trainer_state])
def test_an_incomplete_checkpoint_is_skipped_and_the_run_resumes_from_the_previous_one(
    pretrained, corpus, tmp_path, caplog, damage
):
    run = _killed_run(pretrained, tmp_path, damage)
    recorder = StepRecorder()
    with caplog.at_level(logging.INFO, logger="gtzan_hf.training.resume"):
        trainer = _pretrain(corpus, pretrained, run, callbacks=[recorder])
    messages = [r.getMessage() for r in caplog.records]
    assert f"Skipping {run / 'checkpoint-4'}: incomplete (a save that was interrupted); it will be overwritten." in (
        messages
    )
    assert f"Resuming from {run / 'checkpoint-2'}" in messages
    assert recorder.steps == [3, 4]  # the steps after the complete checkpoint, and only those
    assert trainer.state.global_step == STEPS and (run / ORIGINAL_CHECKPOINT_NAME).is_file()
    assert is_complete_checkpoint(run / "checkpoint-4")  # saved again, whole


class NotTensors:
    """An object in a checkpoint file: torch's safe loader refuses the file."""


def _pickle_an_object(path: Path) -> None:
    torch.save({"state": NotTensors()}, path)


def _pickled_optimizer(checkpoint: Path) -> None:
    _pickle_an_object(checkpoint / "optimizer.pt")


def _pickled_weights(checkpoint: Path) -> None:
    (checkpoint / "model.safetensors").unlink()  # the Trainer then reads pytorch_model.bin
    _pickle_an_object(checkpoint / "pytorch_model.bin")


REFUSED = "was refused: it holds Python objects that could run code when loaded (Unsupported global: GLOBAL "
OBJECT = "test_reliability.NotTensors), and only tensors are read."


@pytest.mark.parametrize(
    "damage, name", [(_pickled_optimizer, "optimizer.pt"), (_pickled_weights, "pytorch_model.bin")]
)
def test_a_checkpoint_that_pickles_an_object_is_refused_in_one_line(pretrained, corpus, tmp_path, damage, name):
    run = _killed_run(pretrained, tmp_path, damage)
    recorder = StepRecorder()
    with pytest.raises(ValueError) as raised:
        _pretrain(corpus, pretrained, run, callbacks=[recorder])
    assert str(raised.value) == (
        f"{run / 'checkpoint-4' / name} {REFUSED}{OBJECT} This checkpoint cannot be resumed: resume from another one "
        "(--resume_from_checkpoint), or start again (--overwrite_output_dir)."
    )
    assert recorder.steps == []  # neither resumed nor skipped as an interrupted save
    with pytest.raises(ValueError, match=f"checkpoint-4/{name} was refused"):
        resume_checkpoint(run, str(run / "checkpoint-4"))


def test_a_random_state_that_pickles_an_object_is_left_out_with_a_warning(pretrained, corpus, tmp_path, caplog):
    def killed_after_checkpoint_2(last_checkpoint: Path) -> None:
        shutil.rmtree(last_checkpoint)
        _pickle_an_object(last_checkpoint.parent / "checkpoint-2" / "rng_state.pth")

    run = _killed_run(pretrained, tmp_path, killed_after_checkpoint_2)
    recorder = StepRecorder()
    with caplog.at_level(logging.WARNING, logger="gtzan_hf.training.resume"):
        trainer = _pretrain(corpus, pretrained, run, callbacks=[recorder])
    assert [r.getMessage() for r in caplog.records] == [
        f"The random state saved in {run / 'checkpoint-2'} {REFUSED}{OBJECT} Resuming without it: the weights, "
        "optimizer and schedule are restored; only the random draws (dropout, crops, masks) differ from an "
        "uninterrupted run."
    ]
    assert recorder.steps == [3, 4] and trainer.state.global_step == STEPS


def test_a_finished_run_is_not_redone_unless_overwritten(pretrained, corpus, tmp_path, caplog):
    run = tmp_path / "run"
    shutil.copytree(pretrained / "run", run)
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
    with caplog.at_level(logging.INFO, logger="gtzan_hf.training.resume"):
        assert _pretrain(corpus, pretrained, run) is None
    assert any(f"{run} holds a finished run" in r.getMessage() for r in caplog.records)
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*")} == before

    caplog.clear()
    recorder = StepRecorder()
    with caplog.at_level(logging.INFO, logger="gtzan_hf.training.resume"):
        _pretrain(corpus, pretrained, run, "--overwrite_output_dir", callbacks=[recorder])
    assert recorder.steps == [1, 2, 3, 4]
    assert any(r.getMessage().startswith(f"Starting a fresh run in {run}") for r in caplog.records)
    assert (run / ORIGINAL_CHECKPOINT_NAME).stat().st_mtime_ns > before[run / ORIGINAL_CHECKPOINT_NAME]


def test_resuming_says_where_it_starts(pretrained, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="gtzan_hf.training.resume"):
        assert resume_checkpoint(tmp_path) is None
    assert caplog.records[-1].getMessage() == f"Starting a fresh run in {tmp_path}"
    checkpoint = _killed_run(pretrained, tmp_path, _truncate_weights) / "checkpoint-4"
    with pytest.raises(ValueError, match="checkpoint-4 is not a complete checkpoint"):
        resume_checkpoint(tmp_path, str(checkpoint))


HOLD_LOCK = """
import sys, time
from pathlib import Path
from gtzan_hf.training.output_dir import RunLock

output_dir, ready = sys.argv[1:]
with RunLock(output_dir):
    Path(ready).touch()
    time.sleep(600)
"""


def _hold_lock(output_dir: Path, ready: Path) -> subprocess.Popen:
    """A process that holds the lock of `output_dir`, as a run would, once it returns."""
    process = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(output_dir), str(ready)])
    for _ in range(1800):  # at most 3 min: the imports, on a busy machine
        if ready.exists() or process.poll() is not None:
            break
        time.sleep(0.1)
    assert ready.exists(), "the lock holder never took the lock"
    return process


def test_a_second_run_on_a_folder_in_use_is_refused_in_one_line(corpus, tmp_path):
    output_dir = tmp_path / "run"
    holder = _hold_lock(output_dir, tmp_path / "ready")
    try:
        (output_dir / "checkpoint-2").mkdir()  # the first run's work
        for main, preset in ((finetune.main, "quickstart"), (pretrain.main, "tiny")):
            argv = ["--preset", preset, "--dataset", str(corpus), "--output_dir", str(output_dir)]
            message = one_line_error(main, [*argv, "--cache_dir", str(tmp_path / "cache")])
            assert f"{output_dir} is in use by another run: process {holder.pid} on host {socket.gethostname()}" in (
                message
            )
            assert "Wait for that run to end (or stop it), or choose another --output_dir." in message
        assert sorted(p.name for p in output_dir.rglob("*")) == [LOCK_NAME, "checkpoint-2"]  # left as they were
        assert not (tmp_path / "cache").exists()  # refused before any data was prepared
    finally:
        holder.kill()
        holder.wait()


class LockProbe(TrainerCallback):
    """Tries to take the run's lock as another run would, while the run trains."""

    def __init__(self):
        self.refusals = []

    def on_step_end(self, args, state, control, **kwargs):
        try:
            with RunLock(args.output_dir):
                pass
        except RunInUseError as error:
            self.refusals.append(str(error))


def test_a_lock_left_by_a_killed_run_is_taken_over_with_a_warning(pretrained, corpus, tmp_path, caplog):
    run_dir = _killed_run(pretrained, tmp_path, _truncate_weights)
    holder = _hold_lock(run_dir, tmp_path / "ready")
    holder.kill()  # SIGKILL: no release, its record stays in the lock file
    holder.wait()
    assert str(holder.pid) in (run_dir / LOCK_NAME).read_text()

    recorder, probe = StepRecorder(), LockProbe()
    with caplog.at_level(logging.INFO):
        trainer = _pretrain(corpus, pretrained, run_dir, callbacks=[recorder, probe])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    taken_over = f"Taking over the lock of {run_dir}, left by process {holder.pid} on host {socket.gethostname()}"
    assert any(message.startswith(taken_over) and "ended without releasing it" in message for message in warnings)
    assert recorder.steps == [3, 4] and trainer.state.global_step == STEPS  # resumed from checkpoint-2
    # the run held its folder while it trained, and released it at the end
    assert len(probe.refusals) == 2 and all(f"process {os.getpid()} on host" in r for r in probe.refusals)
    assert not (run_dir / LOCK_NAME).exists()
    with RunLock(run_dir):
        pass


def test_every_process_of_a_ddp_run_stops_on_a_folder_in_use(corpus, tmp_path):
    output_dir = tmp_path / "run"
    holder = _hold_lock(output_dir, tmp_path / "ready")
    try:
        command = [
            sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            str(REPO / "scripts" / "pretrain.py"), "--preset", "tiny", "--dataset", str(corpus),
            "--output_dir", str(output_dir), "--cache_dir", str(tmp_path / "cache"),
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    # each process says why it stopped (none waits for the main one until torchrun ends it)
    assert len(errors) == 2 and all(f"is in use by another run: process {holder.pid}" in e for e in errors), (
        done.stderr[-3000:]
    )
    assert [p.name for p in output_dir.iterdir()] == [LOCK_NAME] and not (tmp_path / "cache").exists()


def test_the_lock_removes_the_folders_it_made_when_nothing_was_written_in_them(tmp_path):
    output_dir = tmp_path / "runs" / "new"
    with RunLock(output_dir):
        assert (output_dir / LOCK_NAME).is_file()
    assert not any(tmp_path.iterdir())  # a run refused before it wrote anything leaves nothing
    with RunLock(output_dir):
        (output_dir / "config.json").touch()
    assert [p.name for p in output_dir.iterdir()] == ["config.json"]


def test_a_file_system_without_locks_runs_unlocked_with_a_warning(tmp_path, monkeypatch, caplog):
    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with caplog.at_level(logging.WARNING, logger="gtzan_hf.training.output_dir"), RunLock(tmp_path / "run"):
        (tmp_path / "run" / "model.safetensors").touch()
    assert caplog.records[-1].getMessage() == (
        f"Cannot lock {tmp_path / 'run'} (No locks available): its file system has no locks, so nothing stops "
        "another run from writing in it at the same time."
    )
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["model.safetensors"]


TORCH_FULL_DISK = "[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534"


def test_a_failed_save_on_a_full_disk_names_the_folder_and_its_free_space(tmp_path, monkeypatch):
    """The decision alone, with the file system's usage made up: a mounted full disk is below."""
    usage = shutil._ntuple_diskusage(total=20 * 10**9, used=20 * 10**9, free=0)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage)
    folder = tmp_path / "run"
    for error in (
        RuntimeError(TORCH_FULL_DISK),
        RuntimeError("basic_ios::clear: iostream error"),
        SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"),
        OSError(errno.ENOSPC, "No space left on device"),
    ):
        with pytest.raises(DiskFullError) as raised, full_disk_reported(folder):
            raise error
        assert str(raised.value) == (
            f"No space left for {folder}: a save failed with 0 B free of 20.0 GB on its file system. Free some "
            "space, then run the same command again: it resumes from the last complete checkpoint (one left "
            "incomplete by the failed save is skipped)."
        )
        assert raised.value.__cause__ is error  # --traceback shows it
    for error in (ValueError("a user error"), PermissionError(errno.EACCES, "Permission denied")):
        with pytest.raises(type(error)) as raised, full_disk_reported(folder):
            raise error
        assert raised.value is error
    usage = shutil._ntuple_diskusage(total=20 * 10**9, used=10**9, free=19 * 10**9)  # space left: not the disk
    for error in (RuntimeError(TORCH_FULL_DISK), OSError(errno.ENOSPC, "No space left on device")):
        with pytest.raises(type(error)) as raised, full_disk_reported(folder):
            raise error
        assert raised.value is error


@pytest.fixture
def small_disk(tmp_path):
    """A file system of 64 MB of its own, to fill: a tmpfs mounted for the test, and unmounted after it."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount_point)], capture_output=True, text=True
        )
    except FileNotFoundError:
        pytest.skip("no mount command: a full disk needs a tmpfs of its own")
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs to fill (root with CAP_SYS_ADMIN only): {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


class FillsTheDisk(TrainerCallback):
    """Fills the run's disk when `when` comes, but for room for the model weights and half of what the failing save
    needs: the optimizer state of the next checkpoint, or the original-format export."""

    def __init__(self, disk: Path, when: str):
        self.disk, self.when = disk, when

    def _fill(self, args, leave: int) -> None:
        with open(self.disk / "filler", "wb") as filler:
            filler.write(bytes(shutil.disk_usage(self.disk).free - leave))

    def on_save(self, args, state, control, **kwargs):
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if self.when == "checkpoint" and state.global_step == 2:
            sizes = {name: (checkpoint / name).stat().st_size for name in ("model.safetensors", "optimizer.pt")}
            self._fill(args, sizes["model.safetensors"] + sizes["optimizer.pt"] // 2)
        if self.when == "export" and state.global_step == STEPS:
            weights = (checkpoint / "model.safetensors").stat().st_size
            self._fill(args, weights + 200_000 + weights // 2)  # the final weights and config, half the export


@pytest.mark.parametrize("when", ["checkpoint", "export"])
def test_a_full_disk_is_one_line_and_the_run_resumes_once_there_is_space(pretrained, corpus, small_disk, when, caplog):
    run_dir = small_disk / "run"
    argv = [
        "--preset", "tiny", "--dataset", str(corpus), "--cache_dir", str(pretrained / "cache"),
        "--output_dir", str(run_dir), "--max_length", "128", "--num_masked_patches", "16",
        "--per_device_train_batch_size", "4", "--max_steps", str(STEPS), "--save_steps", "2",
        "--save_total_limit", "3", "--logging_steps", "1", "--warmup_steps", "0", "--disable_tqdm", "true",
    ]  # fmt: skip

    def pretrain_filling(argv):
        run_pretrain(*parse_pretrain_args(argv), callbacks=[FillsTheDisk(small_disk, when)])

    message = one_line_error(pretrain_filling, argv)  # the save fails in torch's own (C++) writer
    assert message.startswith(f"error: No space left for {run_dir}: a save failed with ")
    assert "free of 67.1 MB on its file system" in message and "basic_ios" not in message
    assert not (run_dir / LOCK_NAME).exists()
    if when == "checkpoint":  # cut in optimizer.pt
        assert (run_dir / "checkpoint-4" / "optimizer.pt").is_file()
        assert not is_complete_checkpoint(run_dir / "checkpoint-4")
    else:  # a cut export is never taken for a finished run
        assert (run_dir / "ssast_pretrained.pth.partial").is_file()
        assert not (run_dir / ORIGINAL_CHECKPOINT_NAME).exists()

    (small_disk / "filler").unlink()
    recorder = StepRecorder()
    with caplog.at_level(logging.INFO, logger="gtzan_hf.training.resume"):
        _pretrain(corpus, pretrained, run_dir, callbacks=[recorder])
    messages = [r.getMessage() for r in caplog.records]
    if when == "checkpoint":
        skipped = (
            f"Skipping {run_dir / 'checkpoint-4'}: incomplete (a save that was interrupted); it will be overwritten."
        )
        assert skipped in messages
        assert f"Resuming from {run_dir / 'checkpoint-2'}" in messages and recorder.steps == [3, 4]
    else:
        assert f"Resuming from {run_dir / 'checkpoint-4'}" in messages  # the last checkpoint, complete
    exported = torch.load(run_dir / ORIGINAL_CHECKPOINT_NAME, weights_only=True)
    assert exported and is_complete_checkpoint(run_dir / "checkpoint-4")


def test_on_a_full_disk_the_error_is_the_last_thing_a_run_prints(corpus, small_disk, tmp_path):
    with open(small_disk / "filler", "wb") as filler:  # 1 MB left: the first checkpoint cannot be saved
        filler.write(bytes(shutil.disk_usage(small_disk).free - 2**20))
    command = [
        sys.executable, str(REPO / "scripts" / "finetune.py"), *TINY_FINETUNE, "--dataset", str(corpus),
        "--output_dir", str(small_disk / "run"), "--cache_dir", str(tmp_path / "cache"), "--disable_tqdm", "false",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1 and "| 1/1 [" in done.stderr, done.stderr[-3000:]  # the training bar was drawn
    last = done.stderr.rstrip().splitlines()[-1]
    assert last.startswith(f"error: No space left for {small_disk / 'run'}: a save failed"), done.stderr[-3000:]


def test_resuming_pretraining_with_another_model_is_one_line(pretrained, corpus, tmp_path):
    run = _killed_run(pretrained, tmp_path, _truncate_weights)
    recorder = StepRecorder()
    with pytest.raises(ValueError) as refused:
        _pretrain(corpus, pretrained, run, "--max_length", "256", "--num_hidden_layers", "3", callbacks=[recorder])
    assert str(refused.value).startswith(
        f"{run / 'checkpoint-2'} cannot be resumed by this run: it was saved with num_hidden_layers 2 (this run "
        "builds 3); max_length 128 (this run builds 256). Resuming would train it under other settings than its own"
    )
    assert recorder.steps == []
