"""Self-supervised pretraining (gtzan_hf.commands.pretrain, scripts/pretrain.py) on a generated corpus, tiny models,
CPU."""

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
import torch
from conftest import REFERENCE_FIXTURES
from safetensors.torch import load_file
from transformers import TrainerCallback

from gtzan_hf import SSASTConfig, SSASTFeatureExtractor, SSASTForAudioClassification
from gtzan_hf.commands.finetune import parse_finetune_args, run_finetune
from gtzan_hf.commands.pretrain import ORIGINAL_CHECKPOINT_NAME, parse_pretrain_args, run_pretrain
from gtzan_hf.data import load_corpus
from gtzan_hf.data.sources import UNLABELED
from gtzan_hf.data.synthetic import generate_corpus
from gtzan_hf.models.convert import adapt_position_embeddings, pretraining_model_from_original_checkpoint
from gtzan_hf.models.loading import (
    ModelArguments,
    PretrainingModelArguments,
    build_classifier,
    build_feature_extractor,
    build_pretraining_model,
)
from gtzan_hf.models.modeling_ssast import SSASTForPreTraining

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REFERENCE_FIXTURES
ORIGINAL_PRETRAINED = FIXTURES / "pretrain_patch_tiny_d2.pth"
NUM_MASKED = 20
STEPS = 80


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("pretrain")


@pytest.fixture(scope="module")
def corpus(workdir):
    # 10 songs per genre: enough for the fine-tuning quickstart's stratified random split
    generate_corpus(workdir / "corpus", songs_per_genre=10, duration=6.0)
    return workdir / "corpus"


def pretrain_args(corpus, workdir, output_dir, *extra):
    return parse_pretrain_args(
        [
            "--preset", "tiny",
            "--dataset", str(corpus),
            "--cache_dir", str(workdir / "cache"),
            "--output_dir", str(output_dir),
            "--max_length", "256",
            "--num_masked_patches", str(NUM_MASKED),
            "--per_device_train_batch_size", "8",
            "--warmup_steps", "5",
            "--disable_tqdm", "true",
            *extra,
        ]
    )  # fmt: skip


@pytest.fixture(scope="module")
def pretrained(corpus, workdir):
    """A tiny SSAST (2 layers, 16x16 patches, 256 frames) pretrained from scratch for STEPS steps."""
    extra = ["--max_steps", str(STEPS), "--logging_steps", "10", "--save_steps", str(STEPS // 2)]
    trainer = run_pretrain(*pretrain_args(corpus, workdir, workdir / "run", *extra, "--save_total_limit", "2"))
    return trainer, workdir / "run"


def test_pretraining_lowers_both_losses_and_beats_chance(pretrained):
    trainer, _ = pretrained
    logs = [entry for entry in trainer.state.log_history if "mpc_loss" in entry]
    assert [entry["step"] for entry in logs] == list(range(10, STEPS + 1, 10))
    first, last = logs[0], logs[-3:]
    for name in ("mpc_loss", "mpg_loss"):
        assert sum(entry[name] for entry in last) / 3 < first[name], name
    # InfoNCE over NUM_MASKED candidates: chance is 1 / NUM_MASKED, and ln(NUM_MASKED) the untrained loss
    assert first["mpc_loss"] == pytest.approx(torch.log(torch.tensor(NUM_MASKED)).item(), abs=0.1)
    assert sum(entry["mpc_accuracy"] for entry in last) / 3 > 1.5 / NUM_MASKED
    for entry in logs:
        assert entry["loss"] == pytest.approx(entry["mpc_loss"] + 10 * entry["mpg_loss"], rel=1e-3)


class StepRecorder(TrainerCallback):
    def __init__(self):
        self.steps = []
        self.first_weights = None

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if self.first_weights is None:
            self.first_weights = model.ssast.embeddings.patch_embeddings.projection.weight.detach().clone()

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)


def test_rerunning_resumes_from_the_last_checkpoint(pretrained, corpus, workdir):
    trainer, run = pretrained
    resumed_dir = workdir / "resumed"
    shutil.copytree(run, resumed_dir)
    recorder = StepRecorder()
    extra = ["--max_steps", str(STEPS + 10), "--logging_steps", "10", "--save_steps", str(STEPS // 2)]
    resumed = run_pretrain(*pretrain_args(corpus, workdir, resumed_dir, *extra), callbacks=[recorder])

    # only the 10 missing steps ran, starting from the saved model, and the earlier curve was kept
    assert recorder.steps == list(range(STEPS + 1, STEPS + 11))
    saved = load_file(run / f"checkpoint-{STEPS}" / "model.safetensors")
    assert torch.equal(recorder.first_weights, saved["ssast.embeddings.patch_embeddings.projection.weight"])
    before = [entry for entry in trainer.state.log_history if "mpc_loss" in entry]
    after = [entry for entry in resumed.state.log_history if "mpc_loss" in entry]
    assert after[: len(before)] == before and after[-1]["step"] == STEPS + 10


def test_original_format_export_round_trips(pretrained):
    _, run = pretrained
    model = SSASTForPreTraining.from_pretrained(run)
    exported = torch.load(run / ORIGINAL_CHECKPOINT_NAME, weights_only=True)
    assert all(key.startswith("module.") for key in exported)
    assert int(exported["module.p_input_fdim"]) == 128 and int(exported["module.p_input_tdim"]) == 256
    # the original format does not carry the number of masked patches
    reloaded = pretraining_model_from_original_checkpoint(exported, num_masked_patches=NUM_MASKED)
    expected, actual = model.state_dict(), reloaded.state_dict()
    assert expected.keys() == actual.keys()
    for key, value in expected.items():
        assert torch.equal(value, actual[key]), key


@pytest.mark.skipif(not ORIGINAL_PRETRAINED.is_file(), reason=f"original SSAST fixtures not found at {FIXTURES}")
def test_export_has_the_keys_the_original_fine_tuning_code_loads(pretrained):
    _, run = pretrained
    exported = torch.load(run / ORIGINAL_CHECKPOINT_NAME, weights_only=True)
    original = torch.load(ORIGINAL_PRETRAINED, weights_only=True)
    # timm's unused ImageNet heads aside (the original fine-tuning code loads with strict=False)
    expected = {key: value.shape for key, value in original.items() if ".v.head" not in key}
    assert {key: value.shape for key, value in exported.items()} == expected


@pytest.mark.skipif(not ORIGINAL_PRETRAINED.is_file(), reason=f"original SSAST fixtures not found at {FIXTURES}")
def test_continued_pretraining_from_an_original_checkpoint(corpus, workdir):
    start = pretraining_model_from_original_checkpoint(
        torch.load(ORIGINAL_PRETRAINED, weights_only=True), num_masked_patches=NUM_MASKED
    )
    model_args, data_args, training_args, _ = pretrain_args(
        corpus, workdir, workdir / "continued", "--model_name_or_path", str(ORIGINAL_PRETRAINED), "--max_steps", "3"
    )
    model, feature_extractor = build_pretraining_model(model_args.resolve(), model_args)
    assert model.config.num_masked_patches == NUM_MASKED and feature_extractor.max_length == 256
    for key, value in start.state_dict().items():
        assert torch.equal(value, model.state_dict()[key]), key
    # the released weights were trained with AudioSet statistics: the tiny preset's --dataset_stats must not apply
    assert (feature_extractor.mean, feature_extractor.std) == (-4.2677393, 4.5689974)

    trainer = run_pretrain(model_args, data_args, training_args)
    assert trainer.state.global_step == 3
    continued = SSASTForPreTraining.from_pretrained(workdir / "continued")
    assert continued.config.num_hidden_layers == 2
    assert not torch.equal(continued.mpc_head.decoder.weight, start.mpc_head.decoder.weight)


def test_continuing_from_the_output_folder_keeps_its_objective_and_statistics(pretrained):
    _, run = pretrained
    model_args = PretrainingModelArguments(model_name_or_path=str(run))
    model, feature_extractor = build_pretraining_model(model_args.resolve(), model_args)
    assert model.config.num_masked_patches == NUM_MASKED and model.config.max_length == 256
    saved = SSASTFeatureExtractor.from_pretrained(run)
    assert (feature_extractor.mean, feature_extractor.std) == (saved.mean, saved.std) != (-4.2677393, 4.5689974)
    for key, value in SSASTForPreTraining.from_pretrained(run).state_dict().items():
        assert torch.equal(value, model.state_dict()[key]), key


def test_output_folder_is_a_fine_tuning_start(pretrained):
    _, run = pretrained
    pretrained_model = SSASTForPreTraining.from_pretrained(run)
    model_args = ModelArguments(model_name_or_path=str(run), freq_stride=10, time_stride=10, max_length=400)
    model = build_classifier(model_args.resolve(), model_args, ["a", "b", "c"])
    assert isinstance(model, SSASTForAudioClassification) and model.config.num_labels == 3
    assert (model.config.freq_stride, model.config.time_stride, model.config.max_length) == (10, 10, 400)
    encoder, start = model.state_dict(), pretrained_model.state_dict()
    for key in ("ssast.encoder.layer.1.attention.qkv.weight", "ssast.embeddings.patch_embeddings.projection.weight"):
        assert torch.equal(encoder[key], start[key])
    # the positions go through the original fine-tuning code's interpolation, from the 8 x 16 pretraining grid
    positions = adapt_position_embeddings(
        start["ssast.embeddings.position_embeddings"], 2, (8, 16), model.config.patch_grid
    )
    assert torch.equal(encoder["ssast.embeddings.position_embeddings"], positions)
    feature_extractor = build_feature_extractor(model_args.resolve(), model_args.max_length)
    assert feature_extractor.max_length == 400
    assert feature_extractor.mean == SSASTFeatureExtractor.from_pretrained(run).mean  # the corpus' own statistics


def test_finetune_script_starts_from_the_output_folder(pretrained, corpus, workdir):
    _, run = pretrained
    output_dir = workdir / "finetuned"
    command = [
        sys.executable, str(REPO / "scripts" / "finetune.py"),
        "--preset", "quickstart",
        "--model_name_or_path", str(run),
        "--dataset", str(corpus),
        "--cache_dir", str(workdir / "cache"),
        "--num_train_epochs", "1",
        "--output_dir", str(output_dir),
        "--disable_tqdm", "true",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (output_dir / "metrics.json").is_file()
    finetuned = SSASTForAudioClassification.from_pretrained(output_dir)
    # the quickstart's stride and length, not the pretraining ones
    assert (finetuned.config.time_stride, finetuned.config.max_length) == (16, 512)
    assert finetuned.config.num_hidden_layers == 2 and finetuned.config.num_labels == 10


def test_finetuning_starts_from_the_pretrained_encoder(pretrained, corpus, workdir):
    """The quickstart fine-tuning from a pretrained folder, at learning rate 0 for one step so that what it saves is
    what it started from: the pretrained encoder, the pretraining statistics (not the training split's, although the
    preset asks for dataset statistics from scratch), and so the pretraining objective's loss of a trained model."""
    _, run = pretrained
    output_dir = workdir / "finetuned-start"
    model_args, data_args, training_args, _ = parse_finetune_args(
        [
            "--preset", "quickstart",
            "--model_name_or_path", str(run),
            "--dataset", str(corpus),
            "--cache_dir", str(workdir / "cache"),
            "--max_length", "256",  # the pretraining grid: every encoder weight, positions too, comes over as it is
            "--crop_seconds", "2.5",
            "--max_steps", "1",
            "--learning_rate", "0",
            "--head_learning_rate", "0",
            "--output_dir", str(output_dir),
            "--disable_tqdm", "true",
        ]
    )  # fmt: skip
    assert data_args.dataset_stats
    run_finetune(model_args, data_args, training_args)

    start = SSASTForAudioClassification.from_pretrained(output_dir)
    pretrained_model = SSASTForPreTraining.from_pretrained(run)
    encoder = {key: value for key, value in pretrained_model.state_dict().items() if key.startswith("ssast.")}
    del encoder["ssast.embeddings.mask_token"]
    for key, value in encoder.items():
        assert torch.equal(start.state_dict()[key], value), key
    kept, saved = SSASTFeatureExtractor.from_pretrained(output_dir), SSASTFeatureExtractor.from_pretrained(run)
    assert (kept.mean, kept.std) == (saved.mean, saved.std)

    # The start encoder under the pretrained heads scores the pretraining objective below a fresh model, on the same
    # normalised crops and masks.
    songs = sorted(corpus.rglob("*.wav"))[::10]
    crops = torch.stack(
        [kept.normalize(kept.fbank(torch.from_numpy(sf.read(song, dtype="float32")[0]))[:256]) for song in songs]
    )
    mask = pretrained_model.generate_mask(len(songs), torch.Generator().manual_seed(0))
    result = pretrained_model.ssast.load_state_dict(
        {key.removeprefix("ssast."): value for key, value in start.state_dict().items() if key.startswith("ssast.")},
        strict=False,
    )
    assert result.missing_keys == ["embeddings.mask_token"] and not result.unexpected_keys
    torch.manual_seed(0)
    fresh = SSASTForPreTraining(pretrained_model.config)
    with torch.no_grad():
        start_loss = pretrained_model.eval()(crops, bool_masked_pos=mask).loss
        fresh_loss = fresh.eval()(crops, bool_masked_pos=mask).loss
    assert start_loss < fresh_loss


def test_streaming_skips_bad_files_and_trains(corpus, workdir, caplog):
    source = workdir / "unlabelled"
    (source / "nested" / "deeper").mkdir(parents=True)
    songs = sorted(corpus.rglob("*.wav"))[:12]
    for index, song in enumerate(songs):  # files at the top and at any depth: no class folders needed
        shutil.copy(song, source / ("nested/deeper" if index % 2 else "") / f"song{index}.wav")
    (source / "broken.wav").write_bytes(b"not audio at all")
    with caplog.at_level(logging.WARNING, logger="gtzan_hf.commands.pretrain"):
        trainer = run_pretrain(
            *pretrain_args(
                corpus, workdir, workdir / "streamed", "--dataset", str(source), "--streaming", "--dataset_stats",
                "false", "--max_steps", "3", "--per_device_train_batch_size", "4", "--logging_steps", "1",
            )
        )  # fmt: skip
    assert trainer.state.global_step == 3
    assert all(torch.isfinite(torch.tensor(entry["loss"])) for entry in trainer.state.log_history if "loss" in entry)
    assert any("broken.wav" in record.getMessage() for record in caplog.records)


def test_streaming_needs_max_steps(corpus, workdir):
    arguments = pretrain_args(corpus, workdir, workdir / "no-steps", "--streaming", "--max_steps", "-1")
    with pytest.raises(ValueError, match="--max_steps"):
        run_pretrain(*arguments)


def test_unlabelled_corpus_reads_files_outside_class_folders(tmp_path, corpus):
    songs = sorted(corpus.rglob("*.wav"))[:3]
    shutil.copy(songs[0], tmp_path / "top.wav")
    (tmp_path / "a" / "b").mkdir(parents=True)
    shutil.copy(songs[1], tmp_path / "a" / "b" / "deep.wav")
    shutil.copy(songs[2], tmp_path / "a" / "mid.wav")
    sf.write(tmp_path / "a" / "silent.wav", torch.zeros(16000).numpy(), 16000)

    unlabelled = load_corpus(tmp_path, label_column=None, num_proc=1)
    assert sorted(unlabelled.songs["song_id"]) == ["deep", "mid", "top"]
    assert unlabelled.label_names == [UNLABELED]
    assert [entry["song_id"] for entry in unlabelled.skipped] == ["silent"]
    # with labels, a file outside any class folder is still skipped and reported
    labelled = load_corpus(tmp_path, num_proc=1)
    assert "top" not in labelled.songs["song_id"]
    assert any(entry["reason"] == "not inside a class folder" for entry in labelled.skipped)

    (tmp_path / "list.csv").write_text("path\ntop.wav\na/mid.wav\n")
    listed = load_corpus(tmp_path / "list.csv", label_column=None, num_proc=1)
    assert sorted(listed.songs["song_id"]) == ["mid", "top"]


def test_continuing_from_a_fine_tuned_folder_is_refused(tmp_path):
    config = SSASTConfig.from_size("tiny", num_hidden_layers=1, max_length=64, num_labels=2)
    SSASTForAudioClassification(config).save_pretrained(tmp_path)
    model_args = parse_pretrain_args(["--model_name_or_path", str(tmp_path), "--output_dir", str(tmp_path / "o")])[0]
    with pytest.raises(ValueError, match="is a gtzan-hf model .*expected an original pretraining checkpoint"):
        build_pretraining_model(model_args.resolve(), model_args)
