"""Inference on windows of songs: decoding and checking audio, window arithmetic, song-level votes, the prediction
loop and whole-song classification, and their figures. Above the model layer; no data, training or command-line
stack."""
