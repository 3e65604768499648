"""GTZAN genre classifier: drop a song, see its genre, where it changes character, and what the model heard. The
page streams the windows as they are classified; `/classify`'s last update is the whole song's result.

    MODEL_ID=runs/quickstart python space/app.py     # MODEL_ID: a local folder or a Hub id

`TRUST_REMOTE_CODE=1` lets a model folder whose type is not SSAST or the CNN run the code it ships; `GTZAN_HF_SERVING`
forces a serving form (`gtzan_hf.serving.forms`) instead of the fastest one measured at start-up.

The page only: loading, decoding, windowing, voting and the figures are `gtzan_hf.serving.demo`,
`gtzan_hf.inference.songs` and `gtzan_hf.inference.plots`.
"""

import logging
import os
import time

import gradio as gr

from gtzan_hf.inference.plots import spectrogram_figure, timeline_figure
from gtzan_hf.serving.demo import (
    EXAMPLE_CLIPS,
    FORMATS,
    MAX_SECONDS,
    MIN_SECONDS,
    DemoError,
    GenreClassifier,
    serve_on_cpu,
)

TIMELINE_HEADERS = ["start (s)", "end (s)", "genre", "probability"]
# While a song is classified, the page is updated at most every UPDATE_SECONDS, and so that updates (a timeline drawn,
# sent and shown) take at most about UPDATE_SHARE of the time: a small model's windows would otherwise wait on them.
UPDATE_SECONDS = 0.5
UPDATE_SHARE = 0.2


def build_demo(
    model_id: str | None, trust_remote_code: bool = False, update_seconds: float = UPDATE_SECONDS
) -> gr.Blocks:
    classifier = GenreClassifier(model_id, trust_remote_code=trust_remote_code)
    classifier.load()  # now, so that the first visitor does not wait; a failure is shown and retried per request
    window, default_hop = classifier.window_seconds, classifier.hop_seconds  # the model's own
    serving = f"served as {classifier.form.describe()}" if classifier.form else "not loaded"

    def classify(audio: str | None, hop_seconds: float | None = default_hop):
        # Streams the windows classified so far, the first at once, then the whole song's result, which `/classify`'s
        # clients receive last. The windows wait while an update is drawn and sent: the next comes no sooner than
        # `update_seconds`, nor than the last one's cost over UPDATE_SHARE. (No docstring: it would be the API's.)
        next_update = 0.0
        try:
            for result in classifier.iter_classify(audio, hop_seconds):
                prediction = result.prediction
                if not prediction.complete and time.monotonic() < next_update:
                    continue
                start = time.monotonic()
                yield (
                    prediction.top(5),
                    result.summary(),
                    timeline_figure(prediction),
                    result.timeline_rows(),
                    spectrogram_figure(prediction) if prediction.complete else None,
                )
                cost = time.monotonic() - start  # drawing, and the page's handling of the update until it resumes
                next_update = time.monotonic() + max(update_seconds, cost / UPDATE_SHARE)
        except DemoError as error:
            raise gr.Error(str(error), duration=None, print_exception=False) from None  # a message, not a fault

    with gr.Blocks(title="GTZAN genre classifier", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(
            "# What genre is this song?\n"
            f"Upload a song ({FORMATS}, {MIN_SECONDS:g} s to {MAX_SECONDS / 60:g} minutes) or record one. It is cut "
            f"into {window:g} s windows (the model's own), each classified by the model; their mean probabilities "
            "give the genre; the timeline fills as they are classified. "
            f"Model: `{model_id or 'none set'}`, {serving}.",
            elem_id="about",
        )
        gr.Markdown(f"**Model unavailable.** {classifier.problem}" if classifier.problem else "", elem_id="status")
        with gr.Row():
            with gr.Column():
                audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Song")
                hop = gr.Slider(
                    0.25 * window,
                    window,
                    value=default_hop,
                    step=window / 20,
                    label="Hop between windows (s)",
                    info=f"Below {window:g} s the windows overlap: a finer timeline, more to compute.",
                )
                # The API takes any JSON: the hop reaches `classify` as sent, and `GenreClassifier.classify` says
                # what it expects (gradio's own check answers a string, null or a list with a generic error and a
                # server traceback); null is the default hop, as when the hop is omitted.
                hop.preprocess = lambda payload: payload
                button = gr.Button("Classify", variant="primary")
            with gr.Column():
                genre = gr.Label(num_top_classes=5, label="Genre (soft vote over the windows)", elem_id="genre")
                summary = gr.Markdown(elem_id="summary")
        timeline_plot = gr.Plot(label="Timeline")
        timeline = gr.Dataframe(
            headers=TIMELINE_HEADERS,
            datatype=["number", "number", "str", "number"],
            label="Per-window predictions",
            interactive=False,
            elem_id="timeline",
        )
        spectrogram = gr.Plot(label="Log-mel spectrogram given to the model")
        outputs = [genre, summary, timeline_plot, timeline, spectrogram]
        gr.on(
            [button.click, audio.upload, audio.stop_recording],
            classify,
            inputs=[audio, hop],
            outputs=outputs,
            api_name="classify",
        )
        # after the public event, whose name it would otherwise take; the medley with overlapping windows, so that
        # its timeline shows the change
        gr.Examples(
            [[str(path), window / 2 if path.stem.startswith("medley") else window] for path in EXAMPLE_CLIPS],
            inputs=[audio, hop],
            outputs=outputs,
            fn=classify,
            cache_examples=False,
            run_on_click=True,
            api_visibility="private",
        )
    # One request at a time uses all the cores (serve_on_cpu); the others wait in a bounded queue.
    return demo.queue(default_concurrency_limit=1, max_size=32)


if __name__ == "__main__":
    logging.basicConfig(format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("gtzan_hf").setLevel(logging.INFO)  # the serving form chosen, and why
    serve_on_cpu()
    demo = build_demo(os.environ.get("MODEL_ID"), os.environ.get("TRUST_REMOTE_CODE") == "1")
    demo.launch(max_file_size="256mb")
