from pathlib import Path

import pytest
import torch

from gtzan_hf import SSASTFeatureExtractor
from gtzan_hf.commands.cli import run
from gtzan_hf.data.synthetic import GTZAN_GENRES, generate_corpus
from gtzan_hf.models.configuration_ssast import SSASTConfig
from gtzan_hf.models.modeling_ssast import SSASTForAudioClassification

# Outputs of the original SSAST code, shipped in tests/fixtures; a checkout without them (e.g. a sparse one) falls back
# to the project's shared folder beside it.
REFERENCE_FIXTURES = next(
    (
        folder
        for folder in (
            Path(__file__).parent / "fixtures" / "ssast_reference",
            Path(__file__).parents[2] / "shared" / "fixtures" / "ssast_reference",
        )
        if folder.is_dir()
    ),
    Path(__file__).parent / "fixtures" / "ssast_reference",
)


def save_tiny_classifier(path, labels, num_hidden_layers: int, max_length: int, **windows):
    """Save in `path` a random tiny SSAST classifier of `labels` (stride 16, seed 0) and its feature extractor,
    recording `windows` (`window_seconds`, `hop_seconds`) as fine-tuning does; returns `path`."""
    torch.manual_seed(0)
    config = SSASTConfig.from_size(
        "tiny",
        num_hidden_layers=num_hidden_layers,
        max_length=max_length,
        freq_stride=16,
        time_stride=16,
        id2label=dict(enumerate(labels)),
        label2id={label: index for index, label in enumerate(labels)},
    )
    SSASTForAudioClassification(config).save_pretrained(path)
    SSASTFeatureExtractor(max_length=max_length, **windows).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_ssast(tmp_path_factory):
    """Folder of a random tiny SSAST genre classifier (2 layers, stride 16, 1024 frames) and its feature extractor,
    which records 10 s windows every 10 s, as a fine-tuning run's does."""
    path = tmp_path_factory.mktemp("tiny-ssast")
    return save_tiny_classifier(path, GTZAN_GENRES, 2, 1024, window_seconds=10.0, hop_seconds=10.0)


@pytest.fixture(scope="session")
def small_gtzan_named(tmp_path_factory):
    """A generated corpus with the first 10 GTZAN names of each genre, 3 s each: 78 / 12 / 10 songs in the course
    project's split."""
    root = tmp_path_factory.mktemp("small-gtzan-named")
    generate_corpus(root, songs_per_genre=10, seed=1, duration=3.0)
    return root


def one_line_error(main, argv) -> str:
    """The message of a user error of the entry point `main` on `argv`: one `error:` line, exit status 1."""
    with pytest.raises(SystemExit) as raised:
        run(main, argv)
    message = raised.value.code
    assert isinstance(message, str) and message.startswith("error: ") and "\n" not in message, message
    return message
