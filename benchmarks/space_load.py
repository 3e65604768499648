"""
The Gradio Space under load: `space/app.py` served on 127.0.0.1 in a process of its own, called through its public
API (`/classify`) by concurrent gradio_client clients sending good and bad uploads in turn.

    python scripts/benchmark.py space_load                        # a tiny random SSAST, 8 clients, 60 s
    python scripts/benchmark.py space_load --model runs/quickstart --clients 8 --seconds 60

Reports requests sent, good answers, clear errors (the page's message, naming the upload), unexpected exceptions
(anything else: a server error, a generic message, a timeout), the server's peak RSS, and the median and maximum
latency. First, with the server idle, one 9.5-minute 48 kHz stereo WAV: how far it raises the server's peak RSS (the
per-request memory bound documented in `gtzan_hf.serving.demo`).
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from gtzan_hf.data.synthetic import GTZAN_GENRES, synthesize_song
from gtzan_hf.models.configuration_ssast import SSASTConfig
from gtzan_hf.models.feature_extraction_ssast import SSASTFeatureExtractor
from gtzan_hf.models.modeling_ssast import SSASTForAudioClassification

APP = Path(__file__).resolve().parents[1] / "space" / "app.py"


def _tiny_model(folder: Path) -> str:
    torch.manual_seed(0)
    config = SSASTConfig.from_size(
        "tiny",
        num_hidden_layers=2,
        freq_stride=16,
        time_stride=16,
        num_labels=len(GTZAN_GENRES),
        id2label=dict(enumerate(GTZAN_GENRES)),
        label2id={genre: label for label, genre in enumerate(GTZAN_GENRES)},
    )
    SSASTForAudioClassification(config).save_pretrained(folder)
    SSASTFeatureExtractor().save_pretrained(folder)
    return str(folder)


def _uploads(folder: Path) -> tuple[list[Path], list[Path]]:
    """`(good, bad)` files: songs of several formats, rates and lengths; files the page must refuse."""
    rng = np.random.default_rng(0)
    good = []
    for name, genre, seconds, rate, channels in [
        ("rock.flac", "rock", 20.0, 44100, 2),
        ("jazz.ogg", "jazz", 12.0, 22050, 1),
        ("disco.wav", "disco", 45.0, 48000, 2),
        ("blues.mp3", "blues", 8.0, 16000, 1),
    ]:
        audio = synthesize_song(genre, rng, seconds, rate)
        sf.write(folder / name, np.stack([audio] * channels, axis=1), rate)
        good.append(folder / name)
    (folder / "notes.wav").write_text("not a song")
    sf.write(folder / "silence.wav", np.zeros(3 * 16000, dtype=np.float32), 16000)
    sf.write(folder / "click.wav", synthesize_song("metal", rng, 0.5, 16000), 16000)
    sf.write(folder / "nan.wav", np.full(16000, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    (folder / "cut.flac").write_bytes((folder / "rock.flac").read_bytes()[:100])
    bad = [folder / name for name in ("notes.wav", "silence.wav", "click.wav", "nan.wav", "cut.flac")]
    return good, bad


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _memory(pid: int, field: str) -> float:
    """`VmRSS:` or `VmHWM:` (peak) of a process, in MB."""
    line = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith(field))
    return int(line.split()[1]) / 1024


def _start_server(model: str, port: int, log: Path) -> subprocess.Popen:
    environment = {
        **os.environ,
        "MODEL_ID": model,
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    server = subprocess.Popen(
        [sys.executable, str(APP)], env=environment, stdout=log.open("w"), stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 900  # the start-up calibration exports the model to ONNX
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"The Space exited with {server.returncode}; see {log}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server
        except OSError:
            time.sleep(1)
    server.kill()
    raise RuntimeError(f"The Space did not answer on port {port} within 900 s; see {log}")


def _outcome(client, upload: Path) -> str:
    """Send `upload` to `/classify` (the audio alone): `good`, `clear` (the page's message naming the upload) or
    `unexpected`."""
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    try:
        genre, *_ = client.predict(handle_file(str(upload)), api_name="/classify")
    except AppError as error:
        return "clear" if str(error).startswith(upload.name) else "unexpected"
    except Exception:
        return "unexpected"
    return "good" if genre.get("label") in GTZAN_GENRES else "unexpected"


def long_request_memory(url: str, pid: int, folder: Path) -> tuple[float, float]:
    """`(MB, seconds)`: the rise of the server's peak RSS over its RSS for one 9.5-minute 48 kHz stereo WAV."""
    from gradio_client import Client

    clip = synthesize_song("rock", np.random.default_rng(1), 30.0, 48000)
    path = folder / "long.wav"
    sf.write(path, np.stack([np.tile(clip, 19)] * 2, axis=1), 48000)  # 570 s
    client = Client(url, verbose=False)
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # the peak RSS starts again from the current RSS
    before = _memory(pid, "VmRSS:")
    start = time.perf_counter()
    outcome = _outcome(client, path)
    seconds = time.perf_counter() - start
    if outcome != "good":
        raise RuntimeError(f"The 9.5-minute request got {outcome}")
    return _memory(pid, "VmHWM:") - before, seconds


def load(url: str, pid: int, uploads: list[Path], clients: int, seconds: float) -> dict:
    """`clients` threads, each with its own client, sending `uploads` in turn (from its own offset) for `seconds`."""
    from gradio_client import Client

    results, lock = [], threading.Lock()
    deadline = time.monotonic() + seconds

    def client_loop(offset: int) -> None:
        client = Client(url, verbose=False)
        for index in range(offset, offset + 10_000):
            if time.monotonic() >= deadline:
                return
            upload = uploads[index % len(uploads)]
            start = time.perf_counter()
            outcome = _outcome(client, upload)
            with lock:
                results.append((outcome, time.perf_counter() - start))

    threads = [threading.Thread(target=client_loop, args=(offset,)) for offset in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    latencies = [latency for _, latency in results]
    return {
        "sent": len(results),
        **{kind: sum(outcome == kind for outcome, _ in results) for kind in ("good", "clear", "unexpected")},
        "peak_rss": _memory(pid, "VmHWM:"),
        "median": statistics.median(latencies),
        "max": max(latencies),
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="benchmark.py space_load", description=__doc__.strip().split("\n\n")[0])
    parser.add_argument("--model", help="model folder or Hub id (default: a tiny random SSAST saved on the spot)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--skip-long-request", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        model = args.model or _tiny_model(folder / "model")
        good, bad = _uploads(folder)
        port = _free_port()
        start = time.perf_counter()
        server = _start_server(model, port, folder / "server.log")
        try:
            url = f"http://127.0.0.1:{port}/"
            rss = _memory(server.pid, "VmRSS:")
            print(f"# space_load: {model}, up in {time.perf_counter() - start:.0f} s, RSS {rss:.0f} MB")
            print(next((line for line in (folder / "server.log").read_text().splitlines() if "Serving" in line), ""))
            if not args.skip_long_request:
                megabytes, seconds = long_request_memory(url, server.pid, folder)
                print(f"One 9.5-minute 48 kHz stereo WAV: peak RSS +{megabytes:.0f} MB, answered in {seconds:.1f} s")
            uploads = [path for pair in zip(good, bad) for path in pair] + good[len(bad) :] + bad[len(good) :]
            result = load(url, server.pid, uploads, args.clients, args.seconds)
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"\n{args.clients} clients for {args.seconds:g} s, good and bad uploads in turn:")
    print("| requests | good answers | clear errors | unexpected | server peak RSS | latency median / max |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(
        f"| {result['sent']} | {result['good']} | {result['clear']} | {result['unexpected']} | "
        f"{result['peak_rss']:.0f} MB | {result['median']:.2f} s / {result['max']:.2f} s |"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
