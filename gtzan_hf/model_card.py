"""The model card (README.md) written next to a fine-tuned model and pushed with it to the Hub."""

from pathlib import Path

import yaml

CARD_TEMPLATE = """---
{front_matter}---

# {model_name}

{model_description} fine-tuned for {task} on **{dataset}** ({split} split) with
[gtzan-hf](https://github.com/gtzan-hf/gtzan-hf).

## Results

Each song is cut into {eval_segments} windows of {window_seconds:g} s; clip accuracy scores every window,
song accuracy scores each song once after averaging its windows' probabilities (soft voting).

| split | clip accuracy | song accuracy | song accuracy (majority vote) | macro F1 (songs) | songs |
| --- | --- | --- | --- | --- | --- |
{results_rows}

Per-class song accuracy on the test split: {per_class}.

![Song-level confusion matrix on the test split](confusion_song_test.png)

## Usage

```python
from transformers import pipeline

classifier = pipeline("audio-classification", model="{repo_id}", trust_remote_code=True)
classifier("song.wav", top_k=3)  # any sampling rate: the pipeline resamples to 16 kHz
```

The pipeline classifies the first {window_seconds:g} s it is given. For a whole song, cut it into windows and average
their probabilities, as the evaluation does (`gtzan_hf.inference.classify_song`, or the Gradio Space).

## Training recipe

{recipe_rows}

## Intended use and limitations

- Genre tagging of music excerpts similar to the training data ({num_labels} classes: {labels}).
- GTZAN is small (1000 songs) and has known faults (replicated clips, repeated artists, mislabelings; Sturm 2013):
  random splits leak artists between train and test and flatter results; the fault-filtered split is the honest
  benchmark. A test split of 100 songs moves by 1 point per song: compare runs over several seeds or folds.
- Genres are fuzzy (rock borders country and blues; pop borders disco): expect confusions there.
- Not for judging artists or for any decision about people.
"""

RECIPE_KEYS = (
    ("model_name_or_path", "starting checkpoint"),
    ("max_length", "input frames"),
    ("crop_strategy", "training crops"),
    ("crop_seconds", "crop seconds"),
    ("freq_mask", "SpecAugment frequency mask"),
    ("time_mask", "SpecAugment time mask"),
    ("mixup_alpha", "mixup alpha"),
    ("label_smoothing_factor", "label smoothing"),
    ("head_learning_rate", "head learning rate"),
    ("learning_rate", "backbone learning rate"),
    ("layer_decay", "layer-wise decay"),
    ("lr_scheduler_type", "schedule"),
    ("num_train_epochs", "epochs"),
    ("per_device_train_batch_size", "batch size per device"),
    ("gradient_accumulation_steps", "gradient accumulation"),
    ("seed", "seed"),
)


def write_model_card(
    output_dir: str | Path,
    metrics: dict,
    run_config: dict,
    label_names: list[str],
    repo_id: str | None = None,
) -> Path:
    """Write `output_dir/README.md` from the run's `metrics.json` content and resolved configuration."""
    output_dir = Path(output_dir)
    model_name = repo_id.split("/")[-1] if repo_id else output_dir.name
    is_cnn = run_config.get("model_type") == "cnn" and not run_config.get("model_name_or_path")
    dataset = run_config.get("dataset") or "an audio dataset"
    front_matter = {
        "library_name": "transformers",
        "pipeline_tag": "audio-classification",
        "tags": ["audio-classification", "music-genre-classification", "ssast", "gtzan-hf"],
        "model-index": [
            {
                "name": model_name,
                "results": [
                    {
                        "task": {"type": "audio-classification", "name": "Audio classification"},
                        "dataset": {"name": dataset, "type": dataset},
                        "metrics": [
                            {"type": "accuracy", "name": "song accuracy", "value": metrics["test"]["song_accuracy"]},
                            {"type": "accuracy", "name": "clip accuracy", "value": metrics["test"]["clip_accuracy"]},
                        ],
                    }
                ],
            }
        ]
        if "test" in metrics
        else [],
    }
    results_rows = "\n".join(
        f"| {split} | {100 * m['clip_accuracy']:.1f} % | {100 * m['song_accuracy']:.1f} % "
        f"| {100 * m['song_accuracy_hard']:.1f} % | {m['macro_f1']:.3f} | {m['num_songs']} |"
        for split, m in metrics.items()
    )
    per_class_source = metrics.get("test", next(iter(metrics.values())))["per_genre_accuracy"]
    per_class = ", ".join(f"{name} {100 * value:.0f} %" for name, value in per_class_source.items())
    recipe_rows = "\n".join(
        f"- {label}: `{run_config[key]}`" for key, label in RECIPE_KEYS if run_config.get(key) not in (None, "")
    )
    card = CARD_TEMPLATE.format(
        front_matter=yaml.safe_dump(front_matter, sort_keys=False),
        model_name=model_name,
        model_description="A VGG-style CNN baseline"
        if is_cnn
        else "SSAST (Self-Supervised Audio Spectrogram Transformer, Gong et al., AAAI 2022)",
        task="music genre classification" if "gtzan" in dataset.lower() else "audio classification",
        dataset=dataset,
        split=run_config.get("split", "random"),
        eval_segments=run_config.get("eval_segments", 3),
        window_seconds=run_config.get("crop_seconds", 10.0),
        results_rows=results_rows,
        per_class=per_class,
        repo_id=repo_id or str(output_dir),
        recipe_rows=recipe_rows,
        num_labels=len(label_names),
        labels=", ".join(label_names),
    )
    path = output_dir / "README.md"
    path.write_text(card)
    return path
