import pytest

from gtzan_hf.inference.windowing import segment_starts


@pytest.mark.parametrize(
    ("num_frames", "segment", "hop", "expected"),
    [
        # what is left after the last full window (ends at 2000) is 250 frames, half a hop: kept
        (2250, 1000, 500, [0, 500, 1000, 1500]),
        (2249, 1000, 500, [0, 500, 1000]),  # 249 frames left, under half a hop: dropped
        (2990, 1000, 1000, [0, 1000, 2000]),  # a 29.9 s GTZAN song: its third window is partial, kept
        (2500, 1000, 1000, [0, 1000, 2000]),  # exactly half a hop left: kept
        (2499, 1000, 1000, [0, 1000]),
        (3000, 1000, 1000, [0, 1000, 2000]),  # no partial window when the last full one ends the song
        (400, 1000, 1000, [0]),  # a song shorter than one window: one window, padded
    ],
)
def test_last_partial_window_is_kept_from_half_a_hop(num_frames, segment, hop, expected):
    assert segment_starts(num_frames, segment, hop) == expected


def test_a_fixed_number_of_windows_starts_inside_the_song():
    assert segment_starts(2990, 1000, 1000, num_segments=3) == [0, 1000, 2000]
    assert segment_starts(1500, 1000, 1000, num_segments=3) == [0, 1000]
    assert segment_starts(300, 100, 100, num_segments=3) == [0, 100, 200]
