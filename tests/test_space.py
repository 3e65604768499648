"""The functions behind the Gradio Space (gtzan_hf.serving.demo, whole-song inference and its figures, loading
without running a folder's code), with tiny models saved on the spot."""

import json
import os
import shutil
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest
import soundfile as sf
import torch
from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

from gtzan_hf import SSASTFeatureExtractor
from gtzan_hf.data.synthetic import GTZAN_GENRES, synthesize_song, write_space_examples
from gtzan_hf.inference.plots import spectrogram_figure, timeline_figure
from gtzan_hf.models.configuration_cnn import CNNConfig
from gtzan_hf.models.loading import load_classifier
from gtzan_hf.models.modeling_cnn import CNNForAudioClassification
from gtzan_hf.models.modeling_ssast import SSASTForAudioClassification
from gtzan_hf.serving.demo import EXAMPLE_CLIPS, DemoError, GenreClassifier, cpu_count, load_recording

SPACE = Path(__file__).resolve().parents[1] / "space"

LABELS = {"id2label": dict(enumerate(GTZAN_GENRES)), "label2id": {g: i for i, g in enumerate(GTZAN_GENRES)}}


@pytest.fixture(scope="module")
def tiny_cnn(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny-cnn")
    torch.manual_seed(0)
    CNNForAudioClassification(CNNConfig(channels=[4, 8], hidden_size=8, num_labels=10, **LABELS)).save_pretrained(path)
    SSASTFeatureExtractor(max_length=1024).save_pretrained(path)
    return path


def song(genre: str = "rock", seconds: float = 12.0, sampling_rate: int = 16000, seed: int = 0) -> np.ndarray:
    return synthesize_song(genre, np.random.default_rng(seed), seconds, sampling_rate)


@pytest.mark.parametrize(
    "name, format_, sampling_rate, channels",
    [("a.wav", "WAV", 44100, 2), ("a.flac", "FLAC", 22050, 1), ("a.ogg", "OGG", 48000, 2), ("a.mp3", "MP3", 16000, 1)],
)
def test_recordings_of_every_format_rate_and_layout_are_decoded(tmp_path, name, format_, sampling_rate, channels):
    audio = np.stack([song(sampling_rate=sampling_rate)] * channels, axis=1)
    sf.write(tmp_path / name, audio, sampling_rate, format=format_)
    recording = load_recording(tmp_path / name)
    assert recording.sampling_rate == sampling_rate and recording.num_channels == channels
    assert abs(recording.duration - 12.0) < 0.1  # MP3 adds encoder padding


def _write_bad(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.wav"
    if kind == "not-audio":
        path.write_text("This is a text file, not a song.\n")
    elif kind == "empty-file":
        path.write_bytes(b"")
    elif kind == "no-samples":
        sf.write(path, np.zeros(0, dtype=np.float32), 16000)
    elif kind == "silent":
        sf.write(path, np.zeros(3 * 16000, dtype=np.float32), 16000)
    elif kind == "corrupt":  # float samples that decode to NaN
        sf.write(path, np.full(3 * 16000, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    elif kind == "truncated":  # a FLAC cut after its header
        sf.write(tmp_path / "full.flac", song(), 16000)
        path = tmp_path / "truncated.flac"
        path.write_bytes((tmp_path / "full.flac").read_bytes()[:100])
    elif kind == "too-short":
        sf.write(path, song(seconds=0.5), 16000)
    elif kind == "too-long":  # 10 min 1 s at 1 kHz: refused from its header
        sf.write(path, np.full(601 * 1000, 0.1, dtype=np.float32), 1000)
    return path


@pytest.mark.parametrize(
    "kind, message",
    [
        ("not-audio", "could not be read as audio"),
        ("empty-file", "could not be read as audio"),
        ("no-samples", "empty"),
        ("silent", "silent"),
        ("corrupt", "NaN"),
        ("truncated", "cannot be classified|could not be read"),
        ("too-short", "lasts 0.5 s"),
        ("too-long", "lasts 10:01"),
    ],
)
def test_bad_recordings_get_a_message_naming_the_problem(tmp_path, kind, message):
    with pytest.raises(DemoError, match=message):
        load_recording(_write_bad(tmp_path, kind))


def test_no_recording_asks_for_one():
    with pytest.raises(DemoError, match="upload"):
        load_recording(None)


def test_windows_are_those_the_model_gets_from_the_feature_extractor(tiny_ssast, tmp_path):
    """Each window's probabilities equal the model's on that 10 s stretch of audio featurised on its own."""
    waveform = song(seconds=28.0)
    sf.write(tmp_path / "song.wav", waveform, 16000, subtype="FLOAT")
    result = GenreClassifier(str(tiny_ssast), forms=["float32"]).classify(tmp_path / "song.wav", hop_seconds=5.0)
    prediction = result.prediction
    model, feature_extractor = load_classifier(str(tiny_ssast))
    # 28 s = 2798 frames, 10 s windows every 5 s: starts 0..15 and a last partial one at 20 s (7.98 s, over half a hop)
    assert prediction.window_starts.tolist() == [0.0, 5.0, 10.0, 15.0, 20.0]
    expected = []
    for start in prediction.window_starts:
        first = int(start * 16000)  # 1000 frames need 10 s plus the 15 ms the last 25 ms frame reaches past
        inputs = feature_extractor(waveform[first : first + 160240], sampling_rate=16000, return_tensors="pt")
        with torch.no_grad():
            expected.append(model(**inputs).logits.softmax(-1)[0].numpy())
    np.testing.assert_allclose(prediction.window_probabilities, np.stack(expected), atol=1e-5)
    np.testing.assert_allclose(prediction.probabilities, np.mean(expected, axis=0), atol=1e-5)
    assert prediction.label == GTZAN_GENRES[int(np.mean(expected, axis=0).argmax())]
    assert result.timeline_rows() == [
        [start, min(start + 10.0, 27.98), GTZAN_GENRES[row.argmax()], round(float(row.max()), 3)]
        for start, row in zip([0.0, 5.0, 10.0, 15.0, 20.0], expected)
    ]
    assert result.summary().startswith(f"**{prediction.label}**") and "5 windows" in result.summary()


def test_cnn_baseline_is_served_too(tiny_cnn, tmp_path):
    sf.write(tmp_path / "song.flac", np.stack([song(seconds=16.0, sampling_rate=22050)] * 2, axis=1), 22050)
    result = GenreClassifier(str(tiny_cnn), forms=["float32"]).classify(tmp_path / "song.flac")
    prediction = result.prediction
    assert prediction.window_probabilities.shape == (2, 10)  # 0-10 s and the 6 s rest (over half a window)
    np.testing.assert_allclose(prediction.window_probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert list(prediction.top(3)) == [GTZAN_GENRES[i] for i in np.argsort(-prediction.probabilities)[:3]]
    assert "22050 Hz 2 channels" in result.summary()


def test_a_model_with_a_shorter_input_gets_windows_of_its_length(tmp_path):
    torch.manual_seed(0)
    CNNForAudioClassification(CNNConfig(channels=[4], hidden_size=8, num_labels=10, **LABELS)).save_pretrained(
        tmp_path
    )
    SSASTFeatureExtractor(max_length=512).save_pretrained(tmp_path)  # 5.12 s inputs, as the quickstart preset
    sf.write(tmp_path / "song.wav", song(seconds=12.0), 16000)
    classifier = GenreClassifier(str(tmp_path), forms=["float32"])
    with pytest.raises(DemoError, match="between 1.28 and 5.12 s"):  # the hop follows the window too
        classifier.classify(tmp_path / "song.wav", hop_seconds=10.0)
    prediction = classifier.classify(tmp_path / "song.wav").prediction
    assert classifier.window_seconds == prediction.window_seconds == 5.12
    # 1198 frames: windows at 0 and 512; the 174 frames left are under half a hop
    np.testing.assert_allclose(prediction.window_starts, [0.0, 5.12])
    np.testing.assert_allclose(prediction.window_ends, [5.12, 10.24])


def test_unreachable_model_is_reported_not_raised(monkeypatch, tmp_path):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # the Hub is out of reach, at once
    for model_id in ("gtzan-hf/no-such-model", str(tmp_path / "missing-folder")):
        classifier = GenreClassifier(model_id)
        problem = classifier.load()
        assert model_id in problem and "MODEL_ID" in problem
        with pytest.raises(DemoError, match="MODEL_ID"):
            classifier.classify(str(EXAMPLE_CLIPS[0]))


def test_no_model_set_is_reported_on_the_page():
    classifier = GenreClassifier(None)
    assert "No model is set" in classifier.load() and "MODEL_ID" in classifier.problem
    with pytest.raises(DemoError, match="No model is set"):
        classifier.classify(str(EXAMPLE_CLIPS[0]))


def test_a_transformers_ast_is_served_as_it_classifies(tmp_path):
    """A transformers AST folder (no code of its own) is served, converted: the logits of transformers' model on the
    same input, its own statistics and labels."""
    config = ASTConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, max_length=300, **LABELS
    )
    torch.manual_seed(0)
    ast = ASTForAudioClassification(config).eval()
    ast.save_pretrained(tmp_path)
    ASTFeatureExtractor(max_length=300, mean=-5.0, std=3.0).save_pretrained(tmp_path)
    classifier = GenreClassifier(str(tmp_path), forms=["float32"])
    prediction = classifier.classify(str(EXAMPLE_CLIPS[0])).prediction
    assert classifier.window_seconds == 3.0 and prediction.label_names == list(GTZAN_GENRES)
    assert (classifier.feature_extractor.mean, classifier.feature_extractor.std) == (-5.0, 3.0)
    # transformers' own extractor and model on the first window (3 s and the 15 ms its last frame reaches past)
    audio = load_recording(EXAMPLE_CLIPS[0]).resampled(16000)[:48240]
    first = ASTFeatureExtractor(max_length=300, mean=-5.0, std=3.0)(audio, sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        expected = ast(**first).logits.softmax(-1)[0].numpy()
    np.testing.assert_allclose(prediction.window_probabilities[0], expected, atol=1e-4)


def test_hop_outside_the_slider_range_is_refused(tiny_ssast):
    with pytest.raises(DemoError, match="hop"):
        GenreClassifier(str(tiny_ssast), forms=["float32"]).classify(str(EXAMPLE_CLIPS[0]), 1.0)


def test_figures_draw_the_prediction(tiny_ssast, tmp_path):
    sf.write(tmp_path / "song.wav", song(seconds=21.0), 16000)
    prediction = GenreClassifier(str(tiny_ssast), ["float32"]).classify(tmp_path / "song.wav", 5.0).prediction
    windows, labels = prediction.window_probabilities.shape
    axes = timeline_figure(prediction).axes[0]
    bars = axes.patches
    assert len(bars) == windows * labels
    # bars are drawn class by class; each window's stack sums to 1 and runs to the next window's start
    heights = np.array([bar.get_height() for bar in bars]).reshape(labels, windows).T
    np.testing.assert_allclose(heights, prediction.window_probabilities, rtol=1e-6)
    edges = [bar.get_x() + bar.get_width() for bar in bars[:windows]]
    np.testing.assert_allclose(edges, [*prediction.window_starts[1:], prediction.window_ends[-1]])
    names = [text.get_text() for text in axes.texts]
    assert names == [GTZAN_GENRES[row.argmax()] for row in prediction.window_probabilities]
    image = spectrogram_figure(prediction).axes[0].images[0]
    np.testing.assert_array_equal(image.get_array(), prediction.fbank.T)
    assert image.get_extent()[1] == pytest.approx(prediction.duration)


def test_examples_shipped_with_the_space_are_the_generated_ones(tmp_path):
    written = write_space_examples(tmp_path)
    assert sorted(path.name for path in written) == [path.name for path in EXAMPLE_CLIPS]
    for shipped_path, path in zip(EXAMPLE_CLIPS, sorted(written)):
        shipped, regenerated = load_recording(shipped_path), load_recording(path)
        assert shipped.sampling_rate == regenerated.sampling_rate
        assert shipped.waveform.shape == regenerated.waveform.shape
        assert 10.0 <= shipped.duration <= 20.0 and shipped_path.stat().st_size < 200_000


def test_cpu_count_respects_the_affinity():
    assert 1 <= cpu_count() <= len(os.sched_getaffinity(0))


def test_space_requirements_are_the_project_dependencies():
    """The Space installs gtzan_hf's dependencies with the project's own version bounds (no drift)."""
    import tomllib
    from packaging.requirements import Requirement

    pyproject = tomllib.loads((SPACE.parent / "pyproject.toml").read_text())
    project = {Requirement(line).name: Requirement(line) for line in pyproject["project"]["dependencies"]}
    lines = (SPACE / "requirements.txt").read_text().splitlines()
    space = [Requirement(line) for line in lines if line.strip() and not line.startswith(("#", "-"))]
    assert space and all(str(requirement) == str(project[requirement.name]) for requirement in space)
    # gradio comes from the front matter's sdk_version, which must satisfy the project's bound
    sdk_version = next(line.split(":")[1].strip() for line in (SPACE / "README.md").open() if line.startswith("sdk_v"))
    assert project["gradio"].specifier.contains(sdk_version)


FOREIGN_CODE = """
from pathlib import Path

Path({marker!r}).write_text("the folder's code ran")

from gtzan_hf.models.configuration_ssast import SSASTConfig
from gtzan_hf.models.modeling_ssast import SSASTForAudioClassification


class ForeignConfig(SSASTConfig):
    model_type = "foreign-ssast"


class ForeignModel(SSASTForAudioClassification):
    config_class = ForeignConfig
"""


def _folder_with_code(tiny_ssast: Path, folder: Path, marker: Path, **config_fields) -> Path:
    """A copy of the tiny SSAST folder with `FOREIGN_CODE` beside it (writing `marker` when it runs) and
    `config_fields` set in its config.json."""
    shutil.copytree(tiny_ssast, folder)
    (folder / "foreign_code.py").write_text(FOREIGN_CODE.format(marker=str(marker)))
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **config_fields}))
    return folder


def test_a_folder_of_foreign_code_is_refused_unless_trusted(tiny_ssast, tmp_path):
    """A model folder whose type is not ours ships code (`auto_map`) that runs on import: never without opt-in."""
    marker = tmp_path / "marker.txt"
    auto_map = {
        "AutoConfig": "foreign_code.ForeignConfig",
        "AutoModelForAudioClassification": "foreign_code.ForeignModel",
    }
    folder = _folder_with_code(tiny_ssast, tmp_path / "foreign", marker, model_type="foreign-ssast", auto_map=auto_map)

    with pytest.raises(ValueError, match="'foreign-ssast' model.*--trust_remote_code.*TRUST_REMOTE_CODE=1"):
        load_classifier(str(folder))
    problem = GenreClassifier(str(folder), forms=["float32"]).load()
    assert "TRUST_REMOTE_CODE=1" in problem
    assert not marker.exists()

    model, feature_extractor = load_classifier(str(folder), trust_remote_code=True)
    assert marker.exists() and type(model).__name__ == "ForeignModel"
    assert isinstance(feature_extractor, SSASTFeatureExtractor)


def test_our_folders_load_with_the_package_classes_even_with_code_beside_them(tiny_ssast, tmp_path):
    """A saved SSAST folder carries an auto_map to its own modeling files; the package's classes are used instead."""
    marker = tmp_path / "marker.txt"
    auto_map = {"AutoModelForAudioClassification": "foreign_code.ForeignModel"}
    folder = _folder_with_code(tiny_ssast, tmp_path / "ssast", marker, auto_map=auto_map)
    model, _ = load_classifier(str(folder))
    assert type(model) is SSASTForAudioClassification and not marker.exists()


class NotTensors:
    """An object in a weights file: torch's safe loader refuses the file."""


def test_weights_that_pickle_an_object_are_refused_in_one_line_on_the_page(tiny_ssast, tmp_path):
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_ssast, folder)
    (folder / "model.safetensors").unlink()  # from_pretrained then reads pytorch_model.bin
    torch.save({"weights": NotTensors()}, folder / "pytorch_model.bin")
    with pytest.raises(ValueError, match="pytorch_model.bin was refused"):
        load_classifier(str(folder))
    problem = GenreClassifier(str(folder), forms=["float32"]).load()
    assert f"{folder / 'pytorch_model.bin'} was refused: it holds Python objects that could run code" in problem
    assert "Unsupported global: GLOBAL test_space.NotTensors" in problem and "save_pretrained" in problem
    assert "weights_only" not in problem and "\n" not in problem


def test_messages_name_the_upload_not_the_server_folder(tmp_path):
    upload = tmp_path / "gradio" / "5f2c9d" / "my song.wav"  # where gradio keeps an upload, under its original name
    upload.parent.mkdir(parents=True)
    upload.write_text("not a song")
    with pytest.raises(DemoError) as error:
        load_recording(upload)
    assert str(error.value).startswith("my song.wav could not be read as audio")
    assert str(upload.parent) not in str(error.value)


def test_song_filter_bank_by_chunks_is_the_whole_songs(monkeypatch):
    """Long songs are featurised by chunks of frames (bounded memory): the frames are those of one pass."""
    from gtzan_hf.inference import songs as inference

    monkeypatch.setattr(inference, "CHUNK_FRAMES", 300)
    extractor = SSASTFeatureExtractor()
    for seconds in (0.025, 3.0, 6.0, 6.0041, 7.77):
        waveform = torch.from_numpy(song(seconds=seconds)) if seconds > 1 else torch.rand(400) - 0.5
        whole = extractor.fbank(waveform)
        chunked = torch.cat(list(inference.fbank_chunks(waveform, extractor)))
        assert chunked.shape == whole.shape
        torch.testing.assert_close(chunked, whole, atol=1e-4, rtol=0)


def test_windows_by_chunks_give_the_same_predictions(tiny_ssast, monkeypatch):
    """Windows are classified CHUNK_WINDOWS at a time (bounded memory): the same probabilities as all at once."""
    from gtzan_hf.inference import songs as inference

    model, feature_extractor = load_classifier(str(tiny_ssast))
    waveform = song(seconds=47.0)
    whole = inference.classify_song(waveform, 16000, model, feature_extractor, hop_seconds=2.5, batch_size=32)
    monkeypatch.setattr(inference, "CHUNK_WINDOWS", 3)
    chunked = inference.classify_song(waveform, 16000, model, feature_extractor, hop_seconds=2.5, batch_size=2)
    assert len(whole.window_starts) == 16 and chunked.window_starts.tolist() == whole.window_starts.tolist()
    np.testing.assert_allclose(chunked.window_probabilities, whole.window_probabilities, atol=1e-5)


def test_a_song_is_streamed_pass_by_pass_and_ends_with_the_whole_prediction(tiny_ssast):
    """`iter_classify_song` yields after each pass the windows classified so far, the first ones of the whole song's,
    the first window alone, with no figure-only filter bank until the last; its last prediction is `classify_song`'s,
    bit for bit."""
    from gtzan_hf.inference import songs as inference

    model, feature_extractor = load_classifier(str(tiny_ssast))
    waveform = song(seconds=47.0)
    whole = inference.classify_song(waveform, 16000, model, feature_extractor, hop_seconds=5.0, batch_size=3)
    updates = list(
        inference.iter_classify_song(waveform, 16000, model, feature_extractor, hop_seconds=5.0, batch_size=3)
    )
    assert len(whole.window_starts) == 8  # 0 to 35 s: a last window of 2 s is less than half a hop
    assert [len(update.window_starts) for update in updates] == [1, 4, 7, 8]
    assert [update.complete for update in updates] == [False, False, False, True]
    for update in updates:
        assert update.num_windows == 8 and update.duration == whole.duration
        count = len(update.window_starts)
        np.testing.assert_array_equal(update.window_probabilities, whole.window_probabilities[:count])
        np.testing.assert_array_equal(update.probabilities, whole.window_probabilities[:count].mean(axis=0))
    assert all(update.fbank is None for update in updates[:-1])
    np.testing.assert_array_equal(updates[-1].fbank, whole.fbank)
    np.testing.assert_array_equal(updates[-1].probabilities, whole.probabilities)
    assert updates[-1].label == whole.label
    # a song of one window: one pass, one (complete) update
    (short,) = inference.iter_classify_song(song(seconds=3.0), 16000, model, feature_extractor, batch_size=3)
    assert short.complete and len(short.window_starts) == 1
