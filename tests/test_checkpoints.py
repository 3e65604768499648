import hashlib
import io
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
import torch
from huggingface_hub import constants

from gtzan_hf import SSASTConfig, SSASTForAudioClassification
from gtzan_hf.commands.cli import run
from gtzan_hf.commands.convert import main as convert_main
from gtzan_hf.errors import UserError
from gtzan_hf.models.checkpoints import (
    MIRROR_ENV,
    RELEASED_CHECKPOINTS,
    checkpoint_provenance,
    released_name,
    resolve_checkpoint,
    safe_model_weights,
)
from gtzan_hf.models.convert import to_original_checkpoint
from gtzan_hf.models.loading import (
    ModelArguments,
    PretrainingModelArguments,
    build_classifier,
    build_pretraining_model,
    convert_checkpoint,
)
from gtzan_hf.models.modeling_ssast import SSASTForPreTraining

NAME = "SSAST-Tiny-Patch-400"


@pytest.fixture(scope="module")
def original_checkpoint():
    """A random tiny pretraining model and the bytes of its original-format checkpoint, as the mirror serves it."""
    torch.manual_seed(0)
    config = SSASTConfig.from_size(
        "tiny", num_hidden_layers=1, freq_stride=16, time_stride=16, max_length=128, num_masked_patches=8
    )
    model = SSASTForPreTraining(config).eval()
    buffer = io.BytesIO()
    torch.save(to_original_checkpoint(model), buffer)
    return model, buffer.getvalue()


@pytest.fixture
def mirror(monkeypatch, tmp_path):
    """An HTTP checkpoint mirror on 127.0.0.1 (`SSAST_CHECKPOINT_MIRROR` points at it) and a Hugging Face home in
    `tmp_path`. `files` maps a file name to its bytes; with `truncate` set, a body stops halfway through its
    announced `Content-Length`."""
    state = SimpleNamespace(files={}, truncate=False, requests=[])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            state.requests.append(self.path)
            body = state.files.get(self.path.lstrip("/"))
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2] if state.truncate else body)
            self.close_connection = True

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_port}"
    state.stop = lambda: (server.shutdown(), server.server_close())
    monkeypatch.setenv(MIRROR_ENV, state.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setattr(constants, "HF_HOME", str(tmp_path / "hf"))
    state.cache = tmp_path / "hf" / "ssast-checkpoints"
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def cached_files(cache):
    return sorted(path.name for path in cache.iterdir() if not path.name.endswith(".lock"))


def test_released_names():
    assert released_name("ssast-base-patch-400") == "SSAST-Base-Patch-400"
    assert released_name("SSAST-TINY-FRAME-400.PTH") == "SSAST-Tiny-Frame-400"
    assert released_name("runs/SSAST-Base-Patch-400.pth") is None
    assert released_name("SSAST-Huge-Patch-400") is None
    assert len(RELEASED_CHECKPOINTS) == 7
    for name, url in RELEASED_CHECKPOINTS.items():
        assert url.startswith("https://www.dropbox.com/s/") and url.endswith(f"/{name}.pth?dl=1")


def test_paths_and_other_names_are_returned_as_they_are(tmp_path, monkeypatch):
    local = tmp_path / "SSAST-Base-Patch-400.pth"
    local.write_bytes(b"a local file wins over the released name")
    monkeypatch.chdir(tmp_path)
    assert resolve_checkpoint("SSAST-Base-Patch-400.pth") == local.relative_to(tmp_path)
    assert resolve_checkpoint(tmp_path / "missing.pth") == tmp_path / "missing.pth"


def test_download_once_then_offline_from_the_cache(mirror, original_checkpoint, monkeypatch, tmp_path):
    model, checkpoint = original_checkpoint
    mirror.files[f"{NAME}.pth"] = checkpoint
    path = resolve_checkpoint("ssast-tiny-patch-400.pth")
    assert path == mirror.cache / f"{NAME}.pth"
    assert path.read_bytes() == checkpoint
    assert cached_files(mirror.cache) == [f"{NAME}.pth", f"{NAME}.pth.provenance.json"]
    assert checkpoint_provenance(path) == {
        "name": NAME,
        "url": RELEASED_CHECKPOINTS[NAME],
        "downloaded_from": f"{mirror.url}/{NAME}.pth",
        "sha256": hashlib.sha256(checkpoint).hexdigest(),
    }

    mirror.stop()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert resolve_checkpoint(NAME) == path
    assert mirror.requests == [f"/{NAME}.pth"]
    # Converting by name: the same weights, and the provenance saved with the model.
    pretraining = convert_checkpoint(NAME, for_pretraining=True, num_masked_patches=8)
    assert pretraining.config.source_checkpoint == checkpoint_provenance(path)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(pretraining.state_dict()[key], value, rtol=0, atol=0)
    convert_main([NAME, str(tmp_path / "converted"), "--fstride", "16", "--tstride", "16", "--input_tdim", "128"])
    reloaded = SSASTForAudioClassification.from_pretrained(tmp_path / "converted")
    assert reloaded.config.source_checkpoint == checkpoint_provenance(path)


def test_truncated_download_is_rejected_then_replaced(mirror, original_checkpoint):
    checkpoint = original_checkpoint[1]
    mirror.files[f"{NAME}.pth"] = checkpoint
    mirror.truncate = True
    with pytest.raises(UserError, match=f"Incomplete download of {NAME}: {len(checkpoint) // 2} of {len(checkpoint)}"):
        resolve_checkpoint(NAME)
    assert cached_files(mirror.cache) == []

    mirror.truncate = False
    assert resolve_checkpoint(NAME).read_bytes() == checkpoint


def test_corrupt_files_are_never_used(mirror, original_checkpoint):
    checkpoint = original_checkpoint[1]
    # A complete download of the wrong bytes (e.g. an HTML error page) is discarded.
    mirror.files[f"{NAME}.pth"] = b"<html>not a checkpoint</html>" * 100
    with pytest.raises(ValueError, match="not an SSAST checkpoint, discarded"):
        resolve_checkpoint(NAME)
    assert cached_files(mirror.cache) == []

    # A damaged file in the cache with no download record (put there by hand) is downloaded again.
    (mirror.cache / f"{NAME}.pth").write_bytes(checkpoint[:1000])
    mirror.files[f"{NAME}.pth"] = checkpoint
    assert resolve_checkpoint(NAME).read_bytes() == checkpoint
    assert len(mirror.requests) == 2


def test_a_file_put_in_the_cache_by_hand_is_verified_and_used_offline(mirror, original_checkpoint, monkeypatch):
    checkpoint = original_checkpoint[1]
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    mirror.cache.mkdir(parents=True)
    (mirror.cache / f"{NAME}.pth").write_bytes(checkpoint)
    path = resolve_checkpoint(NAME)
    assert checkpoint_provenance(path) == {
        "name": NAME,
        "url": RELEASED_CHECKPOINTS[NAME],
        "sha256": hashlib.sha256(checkpoint).hexdigest(),
    }
    assert mirror.requests == []


def test_offline_with_nothing_cached_says_what_to_fetch_and_where(mirror, monkeypatch):
    monkeypatch.delenv(MIRROR_ENV)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(UserError) as offline:
        resolve_checkpoint("SSAST-Base-Patch-400")
    message = str(offline.value)
    assert "\n" not in message
    assert RELEASED_CHECKPOINTS["SSAST-Base-Patch-400"] in message
    assert str(mirror.cache / "SSAST-Base-Patch-400.pth") in message

    # The same when the connection fails: a mirror on a port where nothing listens.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    monkeypatch.setenv(MIRROR_ENV, f"http://127.0.0.1:{port}/ssast")
    with pytest.raises(UserError) as unreachable:
        resolve_checkpoint("SSAST-Base-Patch-400")
    message = str(unreachable.value)
    assert "\n" not in message
    assert f"http://127.0.0.1:{port}/ssast/SSAST-Base-Patch-400.pth" in message
    assert str(mirror.cache / "SSAST-Base-Patch-400.pth") in message
    assert cached_files(mirror.cache) == []


def test_fine_tuning_and_pretraining_start_from_a_released_name(mirror, original_checkpoint):
    model, checkpoint = original_checkpoint
    mirror.files[f"{NAME}.pth"] = checkpoint
    model_args = ModelArguments(model_name_or_path=NAME, freq_stride=16, time_stride=16, max_length=128)
    source = model_args.resolve()  # downloads before any data is prepared
    assert mirror.requests == [f"/{NAME}.pth"]
    classifier = build_classifier(source, model_args, ["a", "b", "c"])
    assert classifier.config.source_checkpoint["sha256"] == hashlib.sha256(checkpoint).hexdigest()
    torch.testing.assert_close(classifier.ssast.encoder.state_dict(), model.ssast.encoder.state_dict())
    pretraining_args = PretrainingModelArguments(model_name_or_path=f"{NAME.lower()}.pth", num_masked_patches=8)
    pretraining, _ = build_pretraining_model(pretraining_args.resolve(), pretraining_args)
    assert pretraining.config.source_checkpoint["url"] == RELEASED_CHECKPOINTS[NAME]
    assert len(mirror.requests) == 1


def test_the_command_line_says_offline_in_one_line(mirror, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(SystemExit) as exit_:
        run(convert_main, [NAME, str(tmp_path / "converted")])
    message = str(exit_.value.code)
    assert message.startswith("error: ") and "\n" not in message
    assert f"{mirror.url}/{NAME}.pth" in message and str(mirror.cache / f"{NAME}.pth") in message


class NotTensors:
    """An object in a weights file: torch's safe loader refuses the file."""


def test_hub_weights_refused_as_they_are_read_are_one_line_naming_the_model(tmp_path):
    torch.save({"weights": NotTensors()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(ValueError) as raised:
        with safe_model_weights("someone/model"):  # no such local folder: checked as from_pretrained reads it
            torch.load(tmp_path / "pytorch_model.bin", weights_only=True)
    message = str(raised.value)
    assert message.startswith("A PyTorch weights file of someone/model was refused: it holds Python objects")
    assert "(Unsupported global: GLOBAL test_checkpoints.NotTensors)" in message and "save_pretrained" in message
    assert "weights_only" not in message and "\n" not in message
