"""Model folders whose parts disagree or are missing, each made on the spot from a tiny saved classifier: class names
against `num_labels`, class ids with a gap, a `config.json` whose values make no model, weights of another model than
the config, a cut `model.safetensors` or `pytorch_model.bin`, a feature extractor of another input length or cut
short, no `preprocessor_config.json`. Each is one line naming the file and the disagreement, before any data is
prepared, in every command and on the Space's page."""

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from conftest import one_line_error, save_tiny_classifier

from gtzan_hf.commands import evaluate, finetune
from gtzan_hf.data.synthetic import generate_corpus
from gtzan_hf.models.loading import load_classifier
from gtzan_hf.serving.demo import GenreClassifier

LABELS = ["blues", "jazz", "rock"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A tiny saved classifier of LABELS (1 layer, 128 frames), one of 2 layers, one of 5 classes, and a corpus."""
    root = tmp_path_factory.mktemp("model-folders")
    save_tiny_classifier(root / "model", LABELS, 1, 128)
    save_tiny_classifier(root / "deeper", LABELS, 2, 128)
    save_tiny_classifier(root / "wider", [*LABELS, "pop", "metal"], 1, 128)
    generate_corpus(root / "corpus", songs_per_genre=3, seed=0, duration=1.0, genres=tuple(LABELS), num_proc=1)
    return root


def _edit_config(folder: Path, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


def num_labels_against_names(folder, models):
    _edit_config(folder, num_labels=5)
    return "The config.json of {model} disagrees with itself: num_labels is 5 but id2label names 3 classes."


def ids_with_a_gap(folder, models):
    _edit_config(folder, id2label={"0": "blues", "2": "jazz", "3": "rock"}, label2id={})
    return (
        "The config.json of {model} disagrees with itself: id2label names the classes 0, 2, 3: class 1 is missing "
        "(expected the ids 0 to 2 without a gap, one per output of the model's head)."
    )


def values_that_make_no_model(folder, models):
    _edit_config(folder, patch_time=600)
    return "The config.json of {model} describes no valid model: patch_time (600) must lie in [1, max_length=128]."


def weights_of_another_head(folder, models):
    shutil.copy(models / "wider" / "model.safetensors", folder / "model.safetensors")  # 5 classes
    return (
        "{model}/model.safetensors holds classifier.dense.weight of shape [5, 192] where config.json describes "
        "[3, 192], and 1 more of other shapes: the weights and config.json are of two different models."
    )


def weights_of_another_depth(folder, models):
    shutil.copy(models / "deeper" / "model.safetensors", folder / "model.safetensors")  # 2 layers
    return "{model}/model.safetensors holds weights config.json has no place for: ssast.encoder.layer.1."


def cut_safetensors(folder, models):
    weights = folder / "model.safetensors"
    with open(weights, "r+b") as handle:
        handle.truncate(weights.stat().st_size // 2)
    return (
        "{model}/model.safetensors cannot be read (Error while deserializing header: incomplete metadata, file not "
        "fully covered): it was cut short, or is not a safetensors file."
    )


def cut_pytorch_weights(folder, models):
    state_dict = load_classifier(str(folder))[0].state_dict()
    (folder / "model.safetensors").unlink()
    torch.save(state_dict, folder / "pytorch_model.bin")
    data = (folder / "pytorch_model.bin").read_bytes()
    (folder / "pytorch_model.bin").write_bytes(data[: len(data) // 2])
    return "{model}/pytorch_model.bin cannot be read (PytorchStreamReader failed reading zip archive"


def extractor_of_another_length(folder, models):
    preprocessor = json.loads((folder / "preprocessor_config.json").read_text())
    (folder / "preprocessor_config.json").write_text(json.dumps({**preprocessor, "max_length": 1024}))
    return (
        "The parts of {model} disagree: its config.json reads max_length 128, its preprocessor_config.json gives "
        "max_length 1024."
    )


def cut_feature_extractor(folder, models):
    (folder / "preprocessor_config.json").write_text('{"max_length": 12')
    return "The preprocessor_config.json of {model} is not valid JSON (Expecting ',' delimiter"


def no_feature_extractor(folder, models):
    (folder / "preprocessor_config.json").unlink()
    return (
        "{model} has no preprocessor_config.json: a gtzan-hf model folder carries its feature extractor (its "
        "normalisation and windows), and without it the model would be fed AudioSet's statistics and 1.28 s "
        "windows, not those it was trained on."
    )


DAMAGES = [
    num_labels_against_names,
    ids_with_a_gap,
    values_that_make_no_model,
    weights_of_another_head,
    weights_of_another_depth,
    cut_safetensors,
    cut_pytorch_weights,
    extractor_of_another_length,
    cut_feature_extractor,
    no_feature_extractor,
]


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_model_folder_whose_parts_disagree_is_one_line_before_any_data(workdir, tmp_path, damage):
    model = tmp_path / "model"
    shutil.copytree(workdir / "model", model)
    says = damage(model, workdir).format(model=model)
    data = ["--dataset", str(workdir / "corpus"), "--cache_dir", str(tmp_path / "cache")]

    message = one_line_error(evaluate.main, [str(model), *data, "--output_dir", str(tmp_path / "evaluation")])
    assert message.startswith(f"error: {says}"), message
    trained = ["--do_train", "false", "--model_name_or_path", str(model)]
    message = one_line_error(finetune.main, ["--preset", "quickstart", *trained, *data, "--output_dir", str(tmp_path)])
    assert message.startswith(f"error: {says}"), message
    assert not (tmp_path / "cache").exists()  # refused before any data was prepared

    classifier = GenreClassifier(str(model), forms=["float32"])
    assert says in classifier.load()  # the Space's page shows it


def test_fine_tuning_from_a_folder_without_its_feature_extractor_says_what_it_assumes(workdir, tmp_path, caplog):
    model = tmp_path / "model"
    shutil.copytree(workdir / "model", model)
    no_feature_extractor(model, None)
    argv = [
        "--preset", "quickstart", "--model_name_or_path", str(model), "--dataset", str(workdir / "corpus"),
        "--cache_dir", str(tmp_path / "cache"), "--output_dir", str(tmp_path / "run"), "--do_eval", "false",
        "--do_predict", "false", "--max_steps", "1", "--split", "kfold", "--num_folds", "3",
        "--crop_seconds", "1", "--dataset_stats", "false",
    ]  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="gtzan_hf.models.loading"):
        finetune.run_finetune(*finetune.parse_finetune_args(argv)[:3])
    assert [r.getMessage() for r in caplog.records] == [
        f"{model} has no preprocessor_config.json: assuming AudioSet's statistics (mean -4.26774, std 4.569) and "
        "windows of its whole input (128 frames, 1.28 s). If it was trained with others, copy its "
        "preprocessor_config.json into the folder."
    ]
    saved = json.loads((tmp_path / "run" / "preprocessor_config.json").read_text())
    assert saved["max_length"] == 128  # the model's own input, not --max_length's 1024
