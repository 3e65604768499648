"""The Space itself (space/app.py) launched on 127.0.0.1 with a tiny model saved on the spot: called through its API
with gradio_client, and driven in headless Chromium (Debian's `chromium`) with Playwright."""

import importlib.util
import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from gtzan_hf.data.synthetic import synthesize_song
from gtzan_hf.serving.demo import GenreClassifier
from gtzan_hf.serving.forms import SERVING_ENV

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home: the tests talk to 127.0.0.1 only
SPACE = Path(__file__).resolve().parents[1] / "space"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _missing(reason: str):
    # CI installs chromium and the dev extra: there, a missing piece is a failure, not a skip
    return pytest.fail(reason) if os.environ.get("CI") else pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _space_app():
    spec = importlib.util.spec_from_file_location("space_app", SPACE / "app.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    return app


@pytest.fixture(scope="module")
def app_url(tiny_ssast):
    # served in float32, so that the page's figures are those of `expected` to the last digit (the other forms:
    # tests/test_serving.py)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(SERVING_ENV, "float32")
        demo = _space_app().build_demo(str(tiny_ssast), update_seconds=0.0)  # every pass streamed
    demo.launch(server_name="127.0.0.1", server_port=_free_port(), prevent_thread_lock=True, quiet=True)
    try:
        yield demo.local_url
    finally:
        demo.close()


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A generated 20 s stereo FLAC at 44.1 kHz: two 10 s windows."""
    audio = synthesize_song("metal", np.random.default_rng(7), 20.0, 44100)
    path = tmp_path_factory.mktemp("clip") / "metal.flac"
    sf.write(path, np.stack([audio, 0.8 * audio], axis=1), 44100)
    return path


@pytest.fixture(scope="module")
def expected(tiny_ssast, clip):
    """What the page must show: the same model run directly through the library."""
    return GenreClassifier(str(tiny_ssast), forms=["float32"]).classify(clip)


def test_classify_endpoint_returns_the_genre_distribution(app_url, clip, expected):
    from gradio_client import Client, handle_file

    client = Client(app_url, verbose=False)
    genre, summary, _, timeline, _ = client.predict(handle_file(str(clip)), 10.0, api_name="/classify")
    top = expected.prediction.top(5)
    assert genre["label"] == expected.prediction.label
    confidences = {entry["label"]: entry["confidence"] for entry in genre["confidences"]}
    assert list(confidences) == list(top)
    np.testing.assert_allclose(list(confidences.values()), list(top.values()), rtol=1e-5)
    assert timeline["data"] == expected.timeline_rows()
    assert summary == expected.summary()


def test_the_windows_stream_in_order_and_the_last_update_is_the_result(app_url, tmp_path, tiny_ssast):
    """The page fills as windows are classified, from the first window alone: each update holds more windows and says
    how many of all; the last is the whole song's, which `/classify` returns, as the library computes it without
    streaming."""
    from gradio_client import Client, handle_file

    path = tmp_path / "long.flac"
    sf.write(path, synthesize_song("jazz", np.random.default_rng(3), 60.0, 22050), 22050)
    client = Client(app_url, verbose=False)
    job = client.submit(handle_file(str(path)), api_name="/classify")
    updates = list(job)
    result = job.result()
    expected = GenreClassifier(str(tiny_ssast), forms=["float32"]).classify(path)
    windows = len(expected.prediction.window_starts)
    counts = [len(timeline["data"]) for _, _, _, timeline, _ in updates]
    assert len(counts) >= 2 and counts == sorted(set(counts)) and counts[-1] == windows
    assert counts[0] == 1  # the first window's genre comes alone, at once
    for (_, summary, _, timeline, spectrogram), count in zip(updates[:-1], counts):
        assert f"classifying, {count} of {windows} windows" in summary and spectrogram is None
        assert timeline["data"] == expected.timeline_rows()[:count]
    genre, summary, _, timeline, spectrogram = result
    assert [genre, summary, timeline] == [updates[-1][0], updates[-1][1], updates[-1][3]] and spectrogram
    assert genre["label"] == expected.prediction.label and summary == expected.summary()
    assert timeline["data"] == expected.timeline_rows()
    genre, summary, _, timeline, _ = client.predict(handle_file(str(path)), api_name="/classify")
    assert [genre, summary, timeline] == list(result[:2]) + [result[3]]


def test_the_public_api_is_classify_with_a_default_hop(app_url, clip, expected):
    from gradio_client import Client, handle_file

    client = Client(app_url, verbose=False)
    api = client.view_api(print_info=False, return_format="dict")
    assert list(api["named_endpoints"]) == ["/classify"]  # the examples' event is private
    parameters = {
        parameter["parameter_name"]: parameter for parameter in api["named_endpoints"]["/classify"]["parameters"]
    }
    assert list(parameters) == ["audio", "hop_seconds"]
    assert parameters["hop_seconds"]["parameter_has_default"] and parameters["hop_seconds"]["parameter_default"] == 10
    genre, summary, *_ = client.predict(handle_file(str(clip)), api_name="/classify")  # the audio alone
    assert genre["label"] == expected.prediction.label and summary == expected.summary()


def test_a_hop_of_the_wrong_kind_gets_the_demos_message_and_no_traceback(app_url, clip, expected, capfd):
    """The API takes any JSON: a string, a list or a hop out of range gets one line, null the default hop."""
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(app_url, verbose=False)
    capfd.readouterr()
    message = "^The hop must be a number of seconds between 2.5 and 10 s; got {}.$"
    for hop, shown in [("abc", "'abc'"), ([2.5, 5], r"\[2.5, 5\]"), ("5", "'5'"), (1.0, "1.0")]:
        with pytest.raises(AppError, match=message.format(shown)):
            client.predict(handle_file(str(clip)), hop, api_name="/classify")
    genre, summary, *_ = client.predict(handle_file(str(clip)), None, api_name="/classify")
    assert genre["label"] == expected.prediction.label and summary == expected.summary()
    assert "Traceback" not in capfd.readouterr().err  # a visitor's mistake is no server fault


def test_the_hop_slider_follows_the_model_input(tmp_path):
    import gradio as gr
    import torch

    from gtzan_hf import SSASTFeatureExtractor
    from gtzan_hf.models.configuration_cnn import CNNConfig
    from gtzan_hf.models.modeling_cnn import CNNForAudioClassification

    torch.manual_seed(0)
    CNNForAudioClassification(CNNConfig(channels=[4], hidden_size=8, num_labels=2)).save_pretrained(tmp_path)
    SSASTFeatureExtractor(max_length=512).save_pretrained(tmp_path)  # 5.12 s windows
    demo = _space_app().build_demo(str(tmp_path))
    (slider,) = [block for block in demo.blocks.values() if isinstance(block, gr.Slider)]
    assert (slider.minimum, slider.maximum, slider.value) == (1.28, 5.12, 5.12)
    (about,) = [block for block in demo.blocks.values() if block.elem_id == "about"]
    assert "5.12 s windows" in about.value


def test_bad_upload_gets_a_message_and_the_app_stays_up(app_url, clip, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("not a song")
    client = Client(app_url, verbose=False)
    with pytest.raises(AppError, match="could not be read as audio") as error:
        client.predict(handle_file(str(not_audio)), 10.0, api_name="/classify")
    assert str(error.value).startswith("notes.wav could not be read") and "/" not in str(error.value)
    genre, *_ = client.predict(handle_file(str(clip)), 10.0, api_name="/classify")
    assert genre["label"]


def test_browser_upload_shows_genre_and_timeline(app_url, clip, expected):
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        _missing("playwright is not installed: pip install -e '.[dev]'")
    if not Path(CHROMIUM).exists():
        _missing("Debian's chromium is not installed: apt-get install -y chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            page = browser.new_page()
            page.goto(app_url)
            page.locator("input[type=file]").first.set_input_files(str(clip))  # the upload classifies at once
            genre = page.locator("#genre")
            expect(genre).to_contain_text(expected.prediction.label, timeout=60_000)
            cells = page.locator("#timeline [role=gridcell]")  # Gradio's table: a grid, one cell per value
            windows = len(expected.prediction.window_starts)
            expect(cells).to_have_count(4 * windows, timeout=30_000)
            shown = [text.strip() for text in cells.all_inner_texts()]
            rows = [shown[4 * window : 4 * window + 4] for window in range(windows)]
            assert [[float(row[0]), float(row[1]), row[2], float(row[3])] for row in rows] == expected.timeline_rows()
            expect(page.locator("#summary")).to_contain_text(expected.prediction.label)
        finally:
            browser.close()


def test_the_docs_client_snippet_runs_against_the_page(app_url, clip, expected):
    """docs/space.md's `gradio_client` snippets (the result; the streamed updates, the last of which is the result), as
    written, the Space's id replaced by the page's address."""
    from test_snippets import SNIPPETS, kind

    snippets = [code for code in SNIPPETS.values() if kind(code) == "space"]
    assert len(snippets) == 2
    for code in snippets:
        namespace = {}
        exec(code.replace('"YOUR_NAME/gtzan-genre"', repr(app_url)).replace('"song.flac"', repr(str(clip))), namespace)
        assert namespace["genre"]["label"] == expected.prediction.label and namespace["summary"] == expected.summary()
