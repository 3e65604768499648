"""Feature extractor for SSAST: Kaldi-compatible log-mel filter banks, as the released checkpoints were trained on."""

import warnings
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from transformers import BatchFeature, SequenceFeatureExtractor
from transformers.audio_utils import mel_filter_bank, spectrogram, window_function
from transformers.utils import TensorType, is_speech_available, logging

# torchaudio is optional, as for transformers' AST: without it, the same filter bank is computed with numpy.
if is_speech_available():
    import torchaudio.compliance.kaldi as ta_kaldi

logger = logging.get_logger(__name__)

# AudioSet statistics of the released SSAST/AST checkpoints.
AUDIOSET_MEAN = -4.2677393
AUDIOSET_STD = 4.5689974
# Integer PCM is scaled to [-1, 1) as soundfile reads it: divided by 2 ** (bits - 1).
PCM_SCALES = {torch.int16: 2.0**15, torch.int32: 2.0**31}
# Kaldi frames, 25 ms long, one every 10 ms, as the released checkpoints were trained on. Every count of frames,
# samples and seconds in the package derives from these, through the feature extractor's methods.
FRAME_LENGTH_MS = 25.0
FRAME_SHIFT_MS = 10.0
FRAMES_PER_SECOND = 1000 / FRAME_SHIFT_MS
# Float audio peaks past full scale (1.0) happen, e.g. in float files after a gain; beyond +60 dBFS the samples are no
# audio in [-1, 1] (integer PCM stored as floats, corrupt files), and far beyond it their features overflow.
MAX_AMPLITUDE = 1000.0


class SSASTFeatureExtractor(SequenceFeatureExtractor):
    r"""
    Constructs an SSAST feature extractor.

    Mono 16 kHz waveforms (float samples in [-1, 1], or int16 / int32 PCM, scaled as soundfile reads it) become
    Kaldi-compatible log-mel filter banks (`torchaudio.compliance.kaldi.fbank` with `htk_compat=True`, a Hanning
    window, 25 ms frames every 10 ms, no energy, no dither), padded with zeros or truncated to `max_length` frames,
    then normalised as `(x - mean) / (2 * std)`: the convention of the released SSAST and AST checkpoints. The
    parameters and their defaults are those of transformers' `ASTFeatureExtractor`, and for the same settings both
    give the same `input_values`. Without torchaudio, the same filter bank is computed with numpy
    (`transformers.audio_utils`, as `ASTFeatureExtractor` does): its `input_values` differ from torchaudio's by float32
    rounding only (at most 5e-4).

    Args:
        feature_size (`int`, *optional*, defaults to 1):
            The feature dimension of the raw audio (mono).
        sampling_rate (`int`, *optional*, defaults to 16000):
            The sampling rate the model expects, in Hz. Other rates are refused: resample first, e.g. with
            `torchaudio.functional.resample`.
        num_mel_bins (`int`, *optional*, defaults to 128):
            Number of mel filter bank bins.
        max_length (`int`, *optional*, defaults to 1024):
            Number of frames every example is padded or truncated to (100 frames per second).
        padding_value (`float`, *optional*, defaults to 0.0):
            Value of the padded frames, before normalisation.
        do_normalize (`bool`, *optional*, defaults to `True`):
            Whether to normalise the filter banks with `mean` and `std`.
        mean (`float`, *optional*, defaults to -4.2677393):
            Mean of the filter bank values (AudioSet's by default; see [`~SSASTFeatureExtractor.compute_stats`]).
        std (`float`, *optional*, defaults to 4.5689974):
            Standard deviation of the filter bank values; the normalisation divides by twice this value.
        window_seconds (`float`, *optional*):
            The length of the windows the model was trained on, recorded by a fine-tuning run: a waveform is cut to
            this length before padding to `max_length`, as the training windows were. `None`: `max_length` frames.
        hop_seconds (`float`, *optional*):
            The hop between the windows the model was evaluated on, recorded by a fine-tuning run; whole songs are
            classified by windows of `window_seconds` every `hop_seconds` (`gtzan_hf.inference.classify_song`).
        return_attention_mask (`bool`, *optional*, defaults to `False`):
            Whether [`~SequenceFeatureExtractor.pad`] (which the `Trainer`'s default collator calls) adds an
            `attention_mask`. Every example is already `max_length` frames, so such a mask is all ones; the models
            accept it and do not use it. [`~SSASTFeatureExtractor.__call__`] never returns one.
    """

    model_input_names = ["input_values", "attention_mask"]

    def __init__(
        self,
        feature_size=1,
        sampling_rate=16000,
        num_mel_bins=128,
        max_length=1024,
        padding_value=0.0,
        do_normalize=True,
        mean=AUDIOSET_MEAN,
        std=AUDIOSET_STD,
        window_seconds=None,
        hop_seconds=None,
        return_attention_mask=False,
        **kwargs,
    ):
        super().__init__(
            feature_size=feature_size,
            sampling_rate=sampling_rate,
            padding_value=padding_value,
            return_attention_mask=return_attention_mask,
            **kwargs,
        )
        self.num_mel_bins = num_mel_bins
        self.max_length = max_length
        self.do_normalize = do_normalize
        self.mean = mean
        self.std = std
        self.window_seconds = window_seconds
        self.hop_seconds = hop_seconds
        if not is_speech_available():
            fft_length = 1 << (self.frame_length - 1).bit_length()  # Kaldi's round_to_power_of_two
            # One of the 128 filters over 257 FFT bins at 16 kHz is empty, in Kaldi's bank too: no need to warn.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                self.mel_filters = mel_filter_bank(
                    num_frequency_bins=fft_length // 2 + 1,
                    num_mel_filters=num_mel_bins,
                    min_frequency=20,
                    max_frequency=sampling_rate / 2,
                    sampling_rate=sampling_rate,
                    norm=None,
                    mel_scale="kaldi",
                    triangularize_in_mel_space=True,
                )
            self.window = window_function(self.frame_length, "hann", periodic=False)

    @property
    def frame_length(self) -> int:
        """Samples per frame (25 ms: 400 at 16 kHz), as Kaldi rounds it."""
        return int(self.sampling_rate * FRAME_LENGTH_MS / 1000)

    @property
    def hop_length(self) -> int:
        """Samples from one frame to the next (10 ms: 160 at 16 kHz), as Kaldi rounds it."""
        return int(self.sampling_rate * FRAME_SHIFT_MS / 1000)

    @staticmethod
    def seconds_to_frames(seconds: float) -> int:
        """Number of frames in `seconds` (10 s = 1000 frames)."""
        return round(seconds * FRAMES_PER_SECOND)

    @staticmethod
    def frames_to_seconds(frames: float) -> float:
        """Seconds spanned by `frames` frame shifts (1000 frames = 10 s): where frame `frames` starts."""
        return frames / FRAMES_PER_SECOND

    def num_frames(self, num_samples: int) -> int:
        """Frames [`fbank`] gives for `num_samples` samples (Kaldi's `snip_edges`: whole frames only)."""
        return 1 + (num_samples - self.frame_length) // self.hop_length

    def frame_samples(self, first: int, count: int) -> slice:
        """The samples that frames `first` to `first + count - 1` are computed from: their fbank is those frames."""
        return slice(first * self.hop_length, (first + count - 1) * self.hop_length + self.frame_length)

    def fbank(self, waveform: torch.Tensor | np.ndarray) -> torch.Tensor:
        """
        Un-normalised log-mel filter bank of one mono waveform.

        Args:
            waveform (`torch.Tensor` or `np.ndarray` of shape `(num_samples,)`):
                Mono audio at `self.sampling_rate`: float samples in [-1, 1] (peaks up to `MAX_AMPLITUDE` are
                accepted), or int16 / int32 PCM, divided by 2**15 / 2**31 as soundfile does. A tensor stays on its
                device.

        Returns:
            `torch.Tensor` of shape `(num_frames, num_mel_bins)`, float32, with `num_frames`
            [`~SSASTFeatureExtractor.num_frames`]`(num_samples)`: `1 + (num_samples - 400) // 160` at 16 kHz.

        Raises:
            `ValueError` for audio that is not one finite, mono waveform of at least one frame within `MAX_AMPLITUDE`,
            or of another integer type.
        """
        waveform = torch.as_tensor(waveform)
        if not waveform.is_floating_point():
            if waveform.dtype not in PCM_SCALES:
                raise ValueError(
                    f"Got {waveform.dtype} samples; expected float samples in [-1, 1], or int16 / int32 PCM (scaled "
                    "by 2**15 / 2**31). Convert the audio to float first, e.g. divided by its full-scale value."
                )
            waveform = waveform.to(torch.float32) / PCM_SCALES[waveform.dtype]
        waveform = waveform.to(torch.float32)
        if waveform.ndim != 1:
            raise ValueError(
                f"Expected a mono waveform of shape (num_samples,), got shape {tuple(waveform.shape)}. "
                "Downmix multi-channel audio first, e.g. `waveform.mean(0)` for (channels, samples)."
            )
        if waveform.numel() < self.frame_length:
            raise ValueError(
                f"The waveform has {waveform.numel()} samples; at least {self.frame_length} (one "
                f"{FRAME_LENGTH_MS:g} ms frame at {self.sampling_rate} Hz) are needed. Empty or truncated audio "
                "cannot be classified."
            )
        if not torch.isfinite(waveform).all():
            raise ValueError("The waveform contains NaN or infinite values: the audio file is probably corrupt.")
        peak = waveform.abs().max().item()
        if peak > MAX_AMPLITUDE:
            raise ValueError(
                f"The waveform peaks at {peak:.3g}, far beyond full scale (1.0; at most {MAX_AMPLITUDE:g} is "
                "accepted): expected float samples in [-1, 1]. Divide integer PCM stored as floats by its full scale "
                "(32768 for 16 bits); otherwise the audio file is probably corrupt."
            )
        if is_speech_available():
            return ta_kaldi.fbank(
                waveform.unsqueeze(0),
                sample_frequency=self.sampling_rate,
                htk_compat=True,
                use_energy=False,
                window_type="hanning",
                num_mel_bins=self.num_mel_bins,
                dither=0.0,
                frame_shift=FRAME_SHIFT_MS,
                frame_length=FRAME_LENGTH_MS,
            )
        # Kaldi's steps: frames without centring, DC offset removed, pre-emphasis 0.97, power spectrum, log of the
        # mel energies floored at float32's epsilon.
        fbank = spectrogram(
            waveform.cpu().numpy(),
            self.window,
            frame_length=self.frame_length,
            hop_length=self.hop_length,
            fft_length=2 * (len(self.mel_filters) - 1),  # the filters span its one-sided spectrum
            power=2.0,
            center=False,
            preemphasis=0.97,
            mel_filters=self.mel_filters,
            log_mel="log",
            mel_floor=float(np.finfo(np.float32).eps),
            remove_dc_offset=True,
        )
        return torch.from_numpy(fbank.T).to(waveform.device)

    def pad_or_truncate(self, fbank: torch.Tensor, max_length: int | None = None) -> torch.Tensor:
        """Pad with `padding_value` (before normalisation, as the original SSAST) or truncate `(frames, bins)` to
        `max_length` frames (defaults to `self.max_length`)."""
        max_length = max_length or self.max_length
        missing = max_length - fbank.shape[0]
        if missing > 0:
            return torch.nn.functional.pad(fbank, (0, 0, 0, missing), value=self.padding_value)
        return fbank[:max_length]

    def normalize(self, fbank: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        """`(fbank - mean) / (2 * std)` (the factor 2 is the released checkpoints' convention) when `do_normalize`,
        else `fbank` unchanged; `inplace` overwrites `fbank` instead of allocating a new tensor."""
        if not self.do_normalize:
            return fbank
        if inplace:
            return fbank.sub_(self.mean).div_(self.std * 2)
        return (fbank - self.mean) / (self.std * 2)

    @staticmethod
    def compute_stats(fbanks: Iterable[torch.Tensor | np.ndarray]) -> tuple[float, float]:
        """
        Mean and standard deviation of all values of un-normalised filter banks (e.g. [`~SSASTFeatureExtractor.fbank`]
        of a training set), to set `mean` and `std` for a dataset of one's own. Accumulated in float64 so that
        thousands of songs sum without loss.
        """
        total, total_sq, count = 0.0, 0.0, 0
        for fbank in fbanks:
            values = np.asarray(fbank.cpu() if isinstance(fbank, torch.Tensor) else fbank, dtype=np.float64)
            total += values.sum()
            total_sq += np.square(values).sum()
            count += values.size
        if count == 0:
            raise ValueError("compute_stats got no filter bank values: the dataset is empty.")
        mean = total / count
        return float(mean), float(max(total_sq / count - mean**2, 0.0) ** 0.5)

    def __call__(
        self,
        raw_speech: np.ndarray | torch.Tensor | Sequence[float] | Sequence[np.ndarray] | Sequence[torch.Tensor],
        sampling_rate: int | None = None,
        return_tensors: str | TensorType | None = None,
        device: str | torch.device | None = None,
        **kwargs,
    ) -> BatchFeature:
        """
        Featurise one waveform or a batch of waveforms.

        Args:
            raw_speech (`np.ndarray`, `torch.Tensor`, `list[float]`, `list[np.ndarray]` or `list[torch.Tensor]`):
                One mono waveform of shape `(num_samples,)`, or a batch: a list of such waveforms, of any lengths.
                Samples are floats in [-1, 1] or int16 / int32 PCM (see [`~SSASTFeatureExtractor.fbank`]). Arrays
                of two or more dimensions are refused, never guessed: `(2, num_samples)` may be stereo as well as
                two songs. Downmix multi-channel audio first; pass a batch as a list (`list(batch)`).
            sampling_rate (`int`, *optional*):
                Sampling rate of `raw_speech`; must equal `self.sampling_rate`. Pass it to catch silent mistakes (a
                warning is logged when it is missing).
            return_tensors (`str` or [`~utils.TensorType`], *optional*):
                `"pt"` for a torch tensor (kept on `device`), `"np"` for numpy, `None` for a list of numpy arrays.
            device (`str` or `torch.device`, *optional*):
                Where to compute the filter banks, e.g. `"cuda"` for a GPU (with torchaudio; without it they are
                computed on the CPU, then moved to `device`).

        Returns:
            [`BatchFeature`] with `input_values` of shape `(batch, max_length, num_mel_bins)`.
        """
        if sampling_rate is None:
            logger.warning(
                f"It is strongly recommended to pass the `sampling_rate` argument to `{self.__class__.__name__}()`. "
                "Failing to do so can result in silent errors that might be hard to debug."
            )
        elif sampling_rate != self.sampling_rate:
            raise ValueError(
                f"The audio is sampled at {sampling_rate} Hz but this feature extractor expects {self.sampling_rate} "
                f"Hz. Resample it first, e.g. `torchaudio.functional.resample(waveform, {sampling_rate}, "
                f"{self.sampling_rate})`."
            )
        if isinstance(raw_speech, (np.ndarray, torch.Tensor)) and raw_speech.ndim > 1:
            raise ValueError(
                f"Got an array of shape {tuple(raw_speech.shape)}; expected one mono waveform of shape "
                "(num_samples,). Multi-channel audio and a batch look alike, so neither is guessed: downmix to mono "
                "first (e.g. `waveform.mean(0)` for (channels, samples)), and pass a batch as a list of waveforms "
                "(`list(batch)`)."
            )
        is_batched = (
            isinstance(raw_speech, (list, tuple))
            and len(raw_speech) > 0
            and isinstance(raw_speech[0], (np.ndarray, torch.Tensor, list, tuple))
        )
        waveforms = list(raw_speech) if is_batched else [raw_speech]
        if len(waveforms) == 0:
            raise ValueError("Got an empty batch: pass at least one waveform.")

        # the training window's frames, then padding to the input: as the model was trained
        window_frames = self.seconds_to_frames(self.window_seconds) if self.window_seconds else self.max_length
        features = []
        for waveform in waveforms:
            waveform = torch.as_tensor(np.asarray(waveform) if isinstance(waveform, (list, tuple)) else waveform)
            fbank = self.fbank(waveform.to(device) if device is not None else waveform)[:window_frames]
            features.append(self.normalize(self.pad_or_truncate(fbank)))
        input_values = torch.stack(features)

        if return_tensors in ("pt", TensorType.PYTORCH):
            return BatchFeature({"input_values": input_values})
        input_values = input_values.cpu().numpy()
        if return_tensors is None:
            return BatchFeature({"input_values": list(input_values)})
        return BatchFeature({"input_values": input_values}, tensor_type=return_tensors)


SSASTFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")

__all__ = ["SSASTFeatureExtractor"]
