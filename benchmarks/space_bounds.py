"""
Bounded cost for any upload: `space/app.py` served on 127.0.0.1 in a process of its own and sent, one at a time
through its public API (`/classify`), the uploads that used to cost seconds and gigabytes: 3 s at odd sampling rates
(a resampling kernel of orig × new phases and taps) and decompression bombs (a small file declaring many channels at
a high rate for minutes).

    python scripts/benchmark.py space_bounds                        # a tiny random SSAST, served in float32
    python scripts/benchmark.py space_bounds --model runs/quickstart

For each upload: the answer (the genre, or the page's message), how far the request raised the server's peak RSS
above its RSS just before, and its latency. Then the data loaders' check (`audio_problem`) of the bombs, in this
process. Targets (issue 21): under 300 MB and 2 s for a 3 s file at any rate; a bomb refused from its header in under
0.5 s.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from gtzan_hf.data.synthetic import synthesize_song
from gtzan_hf.inference.audio import audio_problem
from gtzan_hf.serving.forms import SERVING_ENV

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the suite beside this one: its server and its client
from space_load import _free_port, _memory, _start_server, _tiny_model  # noqa: E402

ODD_RATES = [16001, 8009, 11127, 22254, 4001]


def _uploads(folder: Path) -> list[tuple[str, Path]]:
    """`(what, path)`: a 3 s stereo WAV at 44.1 kHz (a common rate, for reference) and at each odd rate; a legitimate
    8-channel 96 kHz FLAC; the two bombs."""
    uploads = []
    for rate in [44100, *ODD_RATES]:
        audio = synthesize_song("rock", np.random.default_rng(rate), 3.0, rate)
        path = folder / f"song-{rate}.wav"
        sf.write(path, np.stack([audio, 0.8 * audio], axis=1), rate)
        uploads.append((f"3 s stereo WAV, {rate} Hz", path))
    audio = synthesize_song("jazz", np.random.default_rng(0), 5.0, 96000)
    sf.write(folder / "surround.flac", np.stack([audio] * 8, axis=1), 96000)
    uploads.append(("5 s 8-channel 96 kHz FLAC", folder / "surround.flac"))
    silence = np.zeros((96000 * 60, 8), dtype=np.int16)
    with sf.SoundFile(folder / "bomb.flac", "w", 96000, 8, format="FLAC", subtype="PCM_16") as bomb:
        for _ in range(9):
            bomb.write(silence)
    uploads.append(("bomb: 9 min of 8-channel 96 kHz silence, FLAC", folder / "bomb.flac"))
    # Vorbis encodes each channel: 5 s of 255 channels already take seconds to write
    sf.write(folder / "channels.ogg", np.zeros((48000 * 5, 255), dtype=np.float32), 48000, format="OGG")
    uploads.append(("bomb: 5 s of 255-channel 48 kHz silence, OGG", folder / "channels.ogg"))
    return uploads


def _request(client, pid: int, path: Path) -> tuple[str, float, float]:
    """`(answer, MB, seconds)`: the genre or the page's message, the rise of the server's peak RSS over its RSS just
    before the request, the latency."""
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    Path(f"/proc/{pid}/clear_refs").write_text("5")  # the peak RSS starts again from the current RSS
    before = _memory(pid, "VmRSS:")
    start = time.perf_counter()
    try:
        genre, *_ = client.predict(handle_file(str(path)), api_name="/classify")
        answer = f"classified ({genre['label']})"
    except AppError as error:
        answer = str(error)
    seconds = time.perf_counter() - start
    return answer, _memory(pid, "VmHWM:") - before, seconds


def _loader_check(path: Path) -> tuple[str, float, float]:
    """`(reason, MB, seconds)` of `audio_problem` in this process."""
    Path("/proc/self/clear_refs").write_text("5")
    before = _memory(os.getpid(), "VmRSS:")
    start = time.perf_counter()
    reason = audio_problem(str(path))
    return reason, _memory(os.getpid(), "VmHWM:") - before, time.perf_counter() - start


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="benchmark.py space_bounds", description=__doc__.strip().split("\n\n")[0])
    parser.add_argument("--model", help="model folder or Hub id (default: a tiny random SSAST saved on the spot)")
    parser.add_argument("--serving", default="float32", help=f"{SERVING_ENV} for the server (default: float32)")
    args = parser.parse_args(argv)
    from gradio_client import Client

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        model = args.model or _tiny_model(folder / "model")
        start = time.perf_counter()
        uploads = _uploads(folder)
        print(f"# space_bounds: uploads written in {time.perf_counter() - start:.0f} s")
        os.environ[SERVING_ENV] = args.serving  # the server inherits it: no calibration of the serving forms
        port = _free_port()
        server = _start_server(model, port, folder / "server.log")
        try:
            client = Client(f"http://127.0.0.1:{port}/", verbose=False)
            print(f"# {model} served as {args.serving}, RSS {_memory(server.pid, 'VmRSS:'):.0f} MB\n")
            rows = [(what, path, *_request(client, server.pid, path)) for what, path in uploads]
        finally:
            server.terminate()
            server.wait(timeout=30)
        print("| upload | file size | answer | server peak RSS added | latency |")
        print("| --- | --- | --- | --- | --- |")
        for what, path, answer, megabytes, seconds in rows:
            print(f"| {what} | {path.stat().st_size / 1e6:.2f} MB | {answer} | {megabytes:.0f} MB | {seconds:.2f} s |")
        print("\nThe data loaders' check (`audio_problem`), in this process:\n")
        print("| file | reason | peak RSS added | time |")
        print("| --- | --- | --- | --- |")
        for what, path in uploads[-2:]:
            reason, megabytes, seconds = _loader_check(path)
            print(f"| {what} | {reason} | {megabytes:.0f} MB | {seconds:.3f} s |")


if __name__ == "__main__":
    main(sys.argv[1:])
