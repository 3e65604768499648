"""Inference on windows of songs: decoding and checking audio (`audio`), the model's windows (`windowing`), song-level
votes (`voting`), the prediction loop (`predict`), whole-song classification (`songs`) and their figures (`plots`).
Above the model layer; no data, training or command-line stack.

    from gtzan_hf.inference import classify_song
    from gtzan_hf.models.loading import load_classifier

    model, feature_extractor = load_classifier("runs/quickstart")
    prediction = classify_song(samples, sampling_rate, model, feature_extractor)
"""

from .songs import SongPrediction, classify_song

__all__ = ["SongPrediction", "classify_song"]
