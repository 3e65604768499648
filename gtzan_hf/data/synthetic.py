"""A generated, GTZAN-shaped corpus: songs whose "genres" differ in tempo, rhythm, timbre and pitch range.

The real GTZAN cannot be downloaded everywhere (tests, CI, offline quickstart), so the toolkit writes its own:
`<out_dir>/<genre>/<genre>.000NN.wav`, 30 s, 22 050 Hz, mono 16-bit PCM, GTZAN's ten genre names. Each genre is a
style (drum pattern, tempo range, bass line, lead instrument and register, chords, distortion); every song draws
its tempo, key, melody, levels, timbre details, pattern variations and noise at random, so a model has to learn the
style rather than memorise a clip. The same seed writes the same files.

    python -m gtzan_hf.data.synthetic OUT_DIR --songs-per-genre 100 --seed 0
"""

import argparse
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import soundfile as sf

# Written next to the genre folders of a generated corpus: its settings, and the sign it is not GTZAN.
GENERATED_CORPUS_MARKER = "generated_corpus.json"
GTZAN_GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")

MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)
BLUES = (0, 3, 5, 6, 7, 10)
PENTATONIC = (0, 2, 4, 7, 9)
DORIAN = (0, 2, 3, 5, 7, 9, 10)


@dataclass(frozen=True)
class GenreStyle:
    """How one generated genre sounds. Drum and bass patterns are 16 steps of one bar ("x" = hit)."""

    tempo: tuple[float, float]  # beats per minute, drawn uniformly per song
    swing: float  # delay of every off-beat 16th, as a fraction of a 16th
    kick: str
    snare: str
    hat: str
    hat_decay: float  # seconds: short = closed hi-hat, long = open hi-hat / ride
    bass: str
    bass_wave: str
    bass_root: int  # MIDI note of the bass register
    lead_wave: str
    lead_range: tuple[int, int]  # MIDI range of the melody
    lead_step: int  # melody grid, in 16ths
    lead_density: float  # probability that a melody step plays a note
    scale: tuple[int, ...]
    chords: str  # "none", "pad", "offbeat" (reggae skank), "power" (distorted fifths), "stab"
    drive: float  # distortion of the tonal part (0: clean)
    noise: float  # level of a broadband noise bed


STYLES = {
    "blues": GenreStyle(
        (70, 95), 0.33, "x.....x.x.......", "....x.......x...", "x..xx..xx..xx..x", 0.04,
        "x..x..x.x..x..x.", "saw", 40, "organ", (55, 75), 2, 0.55, BLUES, "pad", 1.5, 0.01,
    ),
    "classical": GenreStyle(
        (60, 90), 0.0, "................", "................", "................", 0.0,
        "x.......x.......", "sine", 36, "strings", (60, 91), 2, 0.8, MAJOR, "pad", 0.0, 0.0,
    ),
    "country": GenreStyle(
        (100, 130), 0.0, "x.......x.......", "....x.......x...", "x.x.x.x.x.x.x.x.", 0.03,
        "x...x...x...x...", "tri", 40, "pluck", (62, 81), 2, 0.7, PENTATONIC, "stab", 0.0, 0.005,
    ),
    "disco": GenreStyle(
        (115, 130), 0.0, "x...x...x...x...", "....x.......x...", "..x...x...x...x.", 0.12,
        "x.x.x.x.x.x.x.x.", "square", 36, "square", (67, 86), 1, 0.45, MINOR, "stab", 0.0, 0.005,
    ),
    "hiphop": GenreStyle(
        (80, 100), 0.15, "x......x..x.....", "....x.......x...", "x.x.x.x.x.x.x.x.", 0.025,
        "x......x..x.....", "sub", 28, "fm", (60, 72), 4, 0.35, MINOR, "none", 0.0, 0.01,
    ),
    "jazz": GenreStyle(
        (110, 160), 0.33, "x...............", "..........x.....", "x...x.x.x...x.x.", 0.25,
        "x...x...x...x...", "sine", 40, "fm", (58, 82), 2, 0.6, DORIAN, "pad", 0.0, 0.003,
    ),
    "metal": GenreStyle(
        (140, 200), 0.0, "xxxxxxxxxxxxxxxx", "....x.......x...", "x.x.x.x.x.x.x.x.", 0.2,
        "xxxxxxxxxxxxxxxx", "saw", 28, "saw", (52, 70), 1, 0.8, MINOR, "power", 12.0, 0.04,
    ),
    "pop": GenreStyle(
        (95, 120), 0.0, "x.......x.x.....", "....x.......x...", "x.x.x.x.x.x.x.x.", 0.03,
        "x.....x.x.......", "square", 36, "square", (72, 91), 2, 0.6, MAJOR, "pad", 0.0, 0.003,
    ),
    "reggae": GenreStyle(
        (65, 85), 0.1, "........x.......", "........x.......", "x.x.x.x.x.x.x.x.", 0.03,
        "x..x..x...x.x...", "sine", 33, "organ", (60, 77), 4, 0.4, MAJOR, "offbeat", 0.0, 0.005,
    ),
    "rock": GenreStyle(
        (110, 140), 0.0, "x.....x.x.......", "....x.......x...", "x.x.x.x.x.x.x.x.", 0.15,
        "x.x.x.x.x.x.x.x.", "saw", 33, "saw", (62, 82), 2, 0.55, PENTATONIC, "power", 4.0, 0.02,
    ),
}  # fmt: skip


def _midi_to_hz(note: np.ndarray | float) -> np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(note, dtype=np.float64) - 69.0) / 12.0)


def _oscillator(wave: str, phase: np.ndarray) -> np.ndarray:
    """One period of `wave` per 2*pi of `phase` (radians)."""
    cycle = (phase / (2 * np.pi)) % 1.0
    shapes = {
        "sine": lambda: np.sin(phase),
        "sub": lambda: np.sin(phase) + 0.3 * np.sin(2 * phase),  # a 808 bass
        "fm": lambda: np.sin(phase + 1.5 * np.sin(2 * phase)),  # electric piano / vibraphone-like bell
        "organ": lambda: np.sin(phase) + 0.5 * np.sin(2 * phase) + 0.3 * np.sin(3 * phase),
        "tri": lambda: 4 * np.abs(cycle - 0.5) - 1,
        "saw": lambda: 2 * cycle - 1,
        "square": lambda: np.where(cycle < 0.5, 1.0, -1.0),
    }
    if wave not in shapes:
        raise ValueError(f"Unknown oscillator {wave!r}.")
    return shapes[wave]()


# One period of each waveform, sampled finely: notes read it at their frequency (a wavetable is ~5x cheaper than
# evaluating sines per sample, and 4096 points keep the lookup error below 16-bit quantisation for the sine).
_TABLE_SIZE = 4096
_WAVETABLES = {
    wave: _oscillator(wave, 2 * np.pi * np.arange(_TABLE_SIZE) / _TABLE_SIZE).astype(np.float32)
    for wave in ("sine", "sub", "fm", "organ", "tri", "saw", "square")
}
# timbres made of others: (table, detune ratio) pairs added together
_VOICES = {"pluck": (("saw", 1.0),), "strings": (("saw", 1.0), ("saw", 1.004))}


@lru_cache(maxsize=4096)
def _envelope(wave: str, num_samples: int, sampling_rate: int) -> np.ndarray:
    """Attack, exponential decay and a 10 ms release; cached, since note lengths repeat on the beat grid."""
    t = np.arange(num_samples, dtype=np.float32) / sampling_rate
    attack = {"strings": 0.12, "organ": 0.01, "sine": 0.01}.get(wave, 0.005)
    decay = {"pluck": 0.18, "fm": 0.5, "tri": 0.25}.get(wave, 10.0)
    release = np.clip((num_samples - np.arange(num_samples)) / (0.01 * sampling_rate), 0.0, 1.0)
    envelope = (np.minimum(t / attack, 1.0) * np.exp(-t / decay) * release).astype(np.float32)
    envelope.flags.writeable = False
    return envelope


class _Track:
    """A mono buffer that notes and drum hits are added into."""

    def __init__(self, num_samples: int, sampling_rate: int):
        self.sampling_rate = sampling_rate
        self.buffer = np.zeros(num_samples, dtype=np.float32)

    def add(self, onset: float, sound: np.ndarray) -> None:
        start = int(onset * self.sampling_rate)
        if start >= len(self.buffer):
            return
        end = min(start + len(sound), len(self.buffer))
        self.buffer[start:end] += sound[: end - start]

    def note(self, onset: float, duration: float, midi: float, wave: str, velocity: float, vibrato: float) -> None:
        # lengths rounded to 5 ms so that envelopes are shared between notes
        num_samples = max(int(round(duration * 200)) * self.sampling_rate // 200, 16)
        t = np.arange(num_samples, dtype=np.float32) / self.sampling_rate
        cycles = np.float32(_midi_to_hz(midi)) * t  # periods elapsed since the onset
        if vibrato:
            cycles += np.float32(vibrato / (2 * np.pi)) * np.sin(np.float32(2 * np.pi * 5.5) * t)
        sound = np.zeros(num_samples, dtype=np.float32)
        for table, ratio in _VOICES.get(wave, ((wave, 1.0),)):
            index = (cycles * np.float32(ratio * _TABLE_SIZE)).astype(np.int64) & (_TABLE_SIZE - 1)
            sound += _WAVETABLES[table][index]
        self.add(onset, np.float32(velocity) * sound * _envelope(wave, num_samples, self.sampling_rate))


def _drum_kit(rng: np.random.Generator, sampling_rate: int, hat_decay: float) -> dict[str, np.ndarray]:
    """Kick, snare and hi-hat samples, their tuning and decay drawn per song."""
    t = np.arange(int(0.4 * sampling_rate)) / sampling_rate
    kick_pitch = rng.uniform(45, 65)
    sweep = kick_pitch + rng.uniform(60, 120) * np.exp(-t / 0.03)
    kick = np.sin(2 * np.pi * np.cumsum(sweep) / sampling_rate) * np.exp(-t / rng.uniform(0.08, 0.2))
    noise = rng.standard_normal(len(t))
    snare = (0.7 * noise + 0.5 * np.sin(2 * np.pi * rng.uniform(170, 230) * t)) * np.exp(-t / rng.uniform(0.04, 0.1))
    hat_noise = np.diff(rng.standard_normal(len(t) + 1))  # differentiated noise: a bright, hiss-like spectrum
    hat = 0.4 * hat_noise * np.exp(-t / max(hat_decay * rng.uniform(0.7, 1.3), 1e-3))
    return {"kick": kick, "snare": snare, "hat": hat}


def _mutate(pattern: str, rng: np.random.Generator, flips: int) -> str:
    """Flip a few steps of a 16-step pattern: every song plays its genre's groove a little differently."""
    steps = list(pattern)
    if "x" not in steps:
        return pattern
    for position in rng.choice(16, size=flips, replace=False):
        steps[position] = "." if steps[position] == "x" else "x"
    return "".join(steps)


def synthesize_song(genre: str, rng: np.random.Generator, duration: float = 30.0, sampling_rate: int = 22050):
    """
    One generated song of `genre` (one of `GTZAN_GENRES`).

    Returns:
        `np.ndarray` of shape `(int(duration * sampling_rate),)`, float32 in [-1, 1].
    """
    style = STYLES[genre]
    num_samples = int(duration * sampling_rate)
    tempo = rng.uniform(*style.tempo)
    sixteenth = 60.0 / tempo / 4
    swing = style.swing * rng.uniform(0.7, 1.3)
    key = int(rng.integers(0, 12))
    num_steps = int(np.ceil(duration / sixteenth)) + 1
    onsets = np.arange(num_steps) * sixteenth + (np.arange(num_steps) % 2) * swing * sixteenth
    onsets += rng.uniform(-0.004, 0.004, num_steps)  # a human's timing
    onsets = np.maximum(onsets, 0.0)
    bars_per_chord = int(rng.choice([1, 2]))
    progression = rng.choice(len(style.scale), size=4)

    def chord_root(step: int) -> int:
        return style.scale[progression[(step // (16 * bars_per_chord)) % 4]]

    drums = _Track(num_samples, sampling_rate)
    kit = _drum_kit(rng, sampling_rate, style.hat_decay)
    for name, pattern in (("kick", style.kick), ("snare", style.snare), ("hat", style.hat)):
        pattern = _mutate(pattern, rng, flips=int(rng.integers(0, 3)))
        for step in range(num_steps):
            if pattern[step % 16] == "x":
                drums.add(onsets[step], rng.uniform(0.6, 1.0) * kit[name])

    tonal = _Track(num_samples, sampling_rate)
    bass_pattern = _mutate(style.bass, rng, flips=int(rng.integers(0, 2)))
    for step in range(num_steps):
        if bass_pattern[step % 16] != "x":
            continue
        midi = style.bass_root + key + chord_root(step)
        if genre == "jazz":  # a walking bass up the scale; the others hold the chord root
            midi = style.bass_root + key + style.scale[(step // 4) % len(style.scale)]
        elif genre == "disco" and step % 4 == 2:
            midi += 12
        length = 4 if genre in ("classical", "hiphop") else 1.6
        tonal.note(onsets[step], length * sixteenth * (2 if genre == "classical" else 1), midi, style.bass_wave,
                   0.5 * rng.uniform(0.8, 1.0), 0.0)  # fmt: skip

    if style.chords != "none":
        for step in range(0, num_steps, 2):
            beat_step = step % 16
            if style.chords == "pad" and beat_step == 0:
                length, play = 16 * sixteenth, True
            elif style.chords == "offbeat":
                length, play = 1.5 * sixteenth, beat_step in (4, 12)
            elif style.chords == "stab":
                length, play = 1.2 * sixteenth, beat_step in (2, 6, 10, 14)
            elif style.chords == "power":
                length, play = 2.0 * sixteenth, True
            else:
                continue
            if not play:
                continue
            root = 48 + key + chord_root(step)
            third = 4 if style.scale in (MAJOR, PENTATONIC) else 3
            intervals = (0, 7, 12) if style.chords == "power" else (0, third, 7)
            wave = {"pad": "strings", "offbeat": "organ", "stab": style.lead_wave, "power": "saw"}[style.chords]
            for interval in intervals:
                tonal.note(onsets[step], length, root + interval, wave, 0.15, 0.0)

    low, high = style.lead_range
    shift = int(rng.integers(-3, 4))
    scale_notes = np.array([n for n in range(low + shift - 12, high + shift + 12) if (n - key) % 12 in style.scale])
    scale_notes = scale_notes[(scale_notes >= low + shift) & (scale_notes <= high + shift)]
    position = int(rng.integers(len(scale_notes)))
    density = style.lead_density * rng.uniform(0.75, 1.15)
    vibrato = 0.3 if style.lead_wave in ("strings", "saw") and genre != "metal" else 0.0
    for step in range(0, num_steps, style.lead_step):
        if rng.random() > density:
            continue
        position = int(np.clip(position + rng.integers(-2, 3), 0, len(scale_notes) - 1))
        length = style.lead_step * sixteenth * rng.uniform(0.8, 1.6)
        tonal.note(onsets[step], length, scale_notes[position], style.lead_wave, 0.35 * rng.uniform(0.7, 1.0), vibrato)

    tone = tonal.buffer
    if style.drive:
        tone = np.tanh(style.drive * rng.uniform(0.8, 1.2) * tone) / np.tanh(style.drive)
    if style.lead_wave == "strings":  # soften the strings' saws with a short moving average (a gentle low-pass)
        tone = np.convolve(tone, np.full(9, 1 / 9), mode="same")
    mix = tone * rng.uniform(0.7, 1.0) + drums.buffer * rng.uniform(0.35, 0.6)
    mix += np.float32(style.noise * rng.uniform(0.5, 1.5)) * rng.standard_normal(num_samples, dtype=np.float32)
    mix /= max(np.abs(mix).max(), 1e-9)
    return (mix * rng.uniform(0.5, 0.95)).astype(np.float32)


def _write_song(job: tuple[str, str, int, int, float, int]) -> str:
    out_dir, genre, index, seed, duration, sampling_rate = job
    rng = np.random.default_rng([seed, GTZAN_GENRES.index(genre), index])
    path = Path(out_dir) / genre / f"{genre}.{index:05d}.wav"
    sf.write(path, synthesize_song(genre, rng, duration, sampling_rate), sampling_rate, subtype="PCM_16")
    return str(path)


def generate_corpus(
    out_dir: str | os.PathLike,
    songs_per_genre: int = 100,
    seed: int = 0,
    duration: float = 30.0,
    sampling_rate: int = 22050,
    genres: tuple[str, ...] = GTZAN_GENRES,
    num_proc: int | None = None,
) -> list[str]:
    """
    Write `songs_per_genre` songs of each genre as `<out_dir>/<genre>/<genre>.000NN.wav` (GTZAN's layout and names).

    Every song is drawn from its own generator seeded by `(seed, genre, index)`, so the same arguments give the
    same files whatever `num_proc` (processes, all cores by default). Returns the written paths. A
    `GENERATED_CORPUS_MARKER` file records the settings, so that reports never mistake the corpus for GTZAN.
    """
    for genre in genres:
        if genre not in STYLES:
            raise ValueError(f"Unknown genre {genre!r}: choose among {GTZAN_GENRES}.")
        (Path(out_dir) / genre).mkdir(parents=True, exist_ok=True)
    settings = {"generator": __name__, "songs_per_genre": songs_per_genre, "seed": seed, "duration": duration}
    (Path(out_dir) / GENERATED_CORPUS_MARKER).write_text(json.dumps({**settings, "genres": list(genres)}, indent=1))
    jobs = [(str(out_dir), g, i, seed, duration, sampling_rate) for g in genres for i in range(songs_per_genre)]
    num_proc = min(num_proc or os.cpu_count() or 1, max(len(jobs), 1))
    if num_proc == 1:
        return [_write_song(job) for job in jobs]
    with Pool(num_proc) as pool:
        return pool.map(_write_song, jobs, chunksize=8)


# The Gradio Space's example clips, shipped in `gtzan_hf/serving/examples/`: (file name, [(genre, seconds), ...]); a
# medley shows the timeline.
SPACE_EXAMPLES = (
    ("metal.ogg", [("metal", 12.0)]),
    ("classical.ogg", [("classical", 12.0)]),
    ("reggae.ogg", [("reggae", 12.0)]),
    ("medley-jazz-disco.ogg", [("jazz", 10.0), ("disco", 10.0)]),
)


def write_space_examples(out_dir: str | os.PathLike, seed: int = 2026, sampling_rate: int = 22050) -> list[Path]:
    """Write the Space's example clips ([`SPACE_EXAMPLES`]) as mono Ogg Vorbis; the same seed writes the same audio."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, (name, parts) in enumerate(SPACE_EXAMPLES):
        rng = np.random.default_rng([seed, index])
        audio = np.concatenate([synthesize_song(genre, rng, seconds, sampling_rate) for genre, seconds in parts])
        sf.write(out_dir / name, audio, sampling_rate, format="OGG", subtype="VORBIS")
        paths.append(out_dir / name)
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", help="folder to write <genre>/<genre>.000NN.wav into")
    parser.add_argument("--songs-per-genre", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per song")
    parser.add_argument("--sampling-rate", type=int, default=22050)
    parser.add_argument("--num-proc", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument(
        "--space-examples",
        action="store_true",
        help="write the Space's example clips instead (gtzan_hf/serving/examples)",
    )
    args = parser.parse_args(argv)
    if args.space_examples:
        for path in write_space_examples(args.out_dir):
            print(f"{path}: {path.stat().st_size / 1024:.0f} KiB")
        return
    paths = generate_corpus(
        args.out_dir, args.songs_per_genre, args.seed, args.duration, args.sampling_rate, num_proc=args.num_proc
    )
    print(f"Wrote {len(paths)} songs to {args.out_dir}")


if __name__ == "__main__":
    main()
