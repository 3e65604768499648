"""Data pipeline benchmark: the cached-fbank pipeline against the course project's per-item path, side by side.

    python scripts/benchmark.py data [--songs-per-genre 100] [--workdir /tmp/gtzan-hf-bench]

On a GTZAN-sized generated corpus (10 x 100 songs x 30 s, 22 050 Hz) it prints: the corpus generation time, the
fbank cache build time (cold) and reload time (warm), the cache size on disk, the clips per second a torch
`DataLoader` delivers from the cache with random 10 s crops + SpecAugment, the same for the course project's
per-item path (read the file, resample, fbank, crop, mask, per sample) with the same loader settings, their ratio,
and peak RSS.
"""

import argparse
import random
import resource
import shutil
import sys
import time
from pathlib import Path

import soundfile as sf
import torch
import torchaudio

from gtzan_hf.data import DataConfig, SSASTDataCollator, build_datasets
from gtzan_hf.data.synthetic import GTZAN_GENRES, generate_corpus
from gtzan_hf.models.feature_extraction_ssast import SSASTFeatureExtractor


class CourseProjectPerItemDataset(torch.utils.data.Dataset):
    """The course project's loader: every item reads its file, resamples, computes the whole fbank, crops and masks."""

    def __init__(self, paths: list[str], labels: list[int]):
        self.paths, self.labels = paths, labels
        self.freq_mask = torchaudio.transforms.FrequencyMasking(36)
        self.time_mask = torchaudio.transforms.TimeMasking(144)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        samples, rate = sf.read(self.paths[index], dtype="float32", always_2d=True)
        waveform = torchaudio.functional.resample(torch.from_numpy(samples.T), rate, 16000).mean(0, keepdim=True)
        fbank = torchaudio.compliance.kaldi.fbank(
            waveform, htk_compat=True, sample_frequency=16000, use_energy=False, window_type="hanning",
            num_mel_bins=128, dither=0.0, frame_shift=10,
        )  # fmt: skip
        start = random.randint(0, max(fbank.shape[0] - 1000, 0))
        fbank = torch.nn.functional.pad(fbank[start : start + 1000], (0, 0, 0, 24))
        fbank = self.time_mask(self.freq_mask(fbank.T.unsqueeze(0))).squeeze(0).T
        return {"input_values": (fbank + 4.2677393) / (4.5689974 * 2), "labels": self.labels[index], "song_index": 0}


def _clips_per_second(dataset, batch_size: int, num_workers: int, num_batches: int) -> float:
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=num_workers,
        collate_fn=SSASTDataCollator(len(GTZAN_GENRES)),
        persistent_workers=num_workers > 0,
    )
    iterator = iter(loader)
    next(iterator)  # start the workers outside the timing
    clips, start = 0, time.perf_counter()
    while clips < num_batches * batch_size:
        try:
            batch = next(iterator)
        except StopIteration:
            iterator = iter(loader)
            continue
        clips += batch["input_values"].shape[0]
    return clips / (time.perf_counter() - start)


def _peak_rss_gb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024**2  # Linux reports KiB


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="benchmark.py data", description=__doc__.split("\n\n")[0])
    parser.add_argument("--songs-per-genre", type=int, default=100)
    parser.add_argument("--workdir", default="/tmp/gtzan-hf-bench", help="corpus and cache go here (not the repo)")
    parser.add_argument("--num-proc", type=int, default=2, help="processes generating the corpus and the cache")
    parser.add_argument("--num-workers", type=int, default=2, help="DataLoader workers, for both pipelines")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-batches", type=int, default=100, help="batches timed for the cached pipeline")
    parser.add_argument(
        "--course-project-batches", type=int, default=8, help="batches timed for the course project's per-item path"
    )
    args = parser.parse_args(argv)

    workdir = Path(args.workdir)
    corpus_dir, cache_dir = workdir / "corpus", workdir / "cache"
    expected = args.songs_per_genre * len(GTZAN_GENRES)
    start = time.perf_counter()
    if len(list(corpus_dir.rglob("*.wav"))) != expected:
        shutil.rmtree(corpus_dir, ignore_errors=True)
        generate_corpus(corpus_dir, args.songs_per_genre, seed=0, num_proc=args.num_proc)
        print(f"corpus: {expected} songs x 30 s generated in {time.perf_counter() - start:.1f} s")
    else:
        print(f"corpus: {expected} songs x 30 s reused from {corpus_dir}")

    shutil.rmtree(cache_dir, ignore_errors=True)
    feature_extractor = SSASTFeatureExtractor()
    timings = []
    for _ in ("cold", "warm"):
        start = time.perf_counter()
        config = DataConfig(
            dataset=str(corpus_dir),
            preprocessing_num_workers=args.num_proc,
            cache_dir=str(cache_dir),
            crop_seconds=10.0,  # the course project's crop (1000 frames, padded to 1024), not the model's whole input
        )
        data = build_datasets(config, feature_extractor)
        timings.append(time.perf_counter() - start)
    cache_bytes = sum(Path(f["filename"]).stat().st_size for f in data.fbanks.cache_files)
    print(f"load + check + split + fbank cache, cold: {timings[0]:.1f} s; warm (cache reused): {timings[1]:.1f} s")
    print(f"fbank cache on disk: {cache_bytes / 1024**3:.2f} GiB for {len(data.fbanks)} songs (float16)")

    torch.manual_seed(0)
    random.seed(0)
    ours = _clips_per_second(data.train, args.batch_size, args.num_workers, args.num_batches)
    files = {path.stem: str(path) for path in corpus_dir.rglob("*.wav")}
    train = data.fbanks.select(data.split_rows["train"])
    course_dataset = CourseProjectPerItemDataset(
        [files[song_id] for song_id in train["song_id"]], list(train["label"])
    )
    course = _clips_per_second(course_dataset, args.batch_size, args.num_workers, args.course_project_batches)
    print(
        f"DataLoader, random 10 s crops + SpecAugment, batch {args.batch_size}, {args.num_workers} workers, "
        f"{torch.get_num_threads()} torch threads:"
    )
    print(f"  cached fbank (gtzan_hf.data): {ours:8.0f} clips/s")
    print(f"  course project per-item path: {course:8.1f} clips/s")
    print(f"  ratio: {ours / course:.1f}x")
    print(
        f"peak RSS: main process {_peak_rss_gb(resource.RUSAGE_SELF):.2f} GiB, "
        f"largest child process {_peak_rss_gb(resource.RUSAGE_CHILDREN):.2f} GiB"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
