"""transformers' own clients on our models, as they work on transformers' AST: a plain `Trainer` with its default
collator, and a saved folder through the Auto classes and `pipeline` in a process that cannot import gtzan_hf (with
torchaudio, and without it)."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

from gtzan_hf import SSASTFeatureExtractor
from gtzan_hf.data.synthetic import GTZAN_GENRES, synthesize_song
from gtzan_hf.models.configuration_cnn import CNNConfig
from gtzan_hf.models.configuration_ssast import SSASTConfig
from gtzan_hf.models.modeling_cnn import CNNForAudioClassification
from gtzan_hf.models.modeling_ssast import SSASTForAudioClassification, SSASTForPreTraining

FRAMES = 128
LABELS = {"id2label": dict(enumerate(GTZAN_GENRES)), "label2id": {genre: i for i, genre in enumerate(GTZAN_GENRES)}}


def songs(count: int, seconds: float = 1.5) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [synthesize_song(GTZAN_GENRES[i % 10], rng, seconds, 16000) for i in range(count)]


def tiny_model(kind: str):
    torch.manual_seed(0)
    if kind == "cnn":
        return CNNForAudioClassification(CNNConfig(max_length=FRAMES, channels=[4, 8], hidden_size=8, **LABELS))
    geometry = dict(num_hidden_layers=1, max_length=FRAMES, freq_stride=16, time_stride=16)
    if kind == "pretraining":
        return SSASTForPreTraining(SSASTConfig.from_size("tiny", num_masked_patches=16, **geometry))
    return SSASTForAudioClassification(SSASTConfig.from_size("tiny", num_labels=10, **geometry, **LABELS))


@pytest.mark.parametrize("return_attention_mask", [False, True], ids=["default", "mask"])
@pytest.mark.parametrize("kind", ["ssast", "cnn", "pretraining"])
def test_a_plain_trainer_with_its_default_collator_trains_and_evaluates(tmp_path, kind, return_attention_mask):
    # return_attention_mask=True: folders saved before the default became AST's, and the example scripts' default.
    extractor = SSASTFeatureExtractor(max_length=FRAMES, return_attention_mask=return_attention_mask)
    features = extractor(songs(4), sampling_rate=16000)["input_values"]
    columns = {"input_values": features} | ({} if kind == "pretraining" else {"labels": [0, 1, 2, 3]})
    dataset = Dataset.from_dict(columns)
    trainer = Trainer(
        model=tiny_model(kind),
        args=TrainingArguments(
            tmp_path, max_steps=1, per_device_train_batch_size=2, report_to=[], use_cpu=True, disable_tqdm=True
        ),
        train_dataset=dataset,
        eval_dataset=dataset,
        processing_class=extractor,
    )
    assert isinstance(trainer.data_collator, DataCollatorWithPadding)
    batch = next(iter(trainer.get_train_dataloader()))
    assert ("attention_mask" in batch) == return_attention_mask
    before = [parameter.detach().clone() for parameter in trainer.model.parameters()]
    trainer.train()
    assert trainer.state.global_step == 1
    assert any(not torch.equal(old, new) for old, new in zip(before, trainer.model.parameters()))
    if kind != "pretraining":  # the Trainer reports an evaluation loss for batches with labels only
        assert math.isfinite(trainer.evaluate()["eval_loss"])


# Run in a fresh process where `import gtzan_hf` fails (and, when asked, `import torchaudio`): what a user of the
# saved folder has, with transformers' remote code only.
FRESH_PROCESS = """
import json, sys
sys.modules["gtzan_hf"] = None
if {block_torchaudio}:
    sys.modules["torchaudio"] = None
import numpy as np, torch
from transformers import AutoFeatureExtractor, AutoModelForAudioClassification, DataCollatorWithPadding, pipeline
from transformers.utils import is_speech_available

folder = {folder!r}
waveform = np.load({waveform!r})
extractor = AutoFeatureExtractor.from_pretrained(folder, trust_remote_code=True)
model = AutoModelForAudioClassification.from_pretrained(folder, trust_remote_code=True).eval()
features = extractor(waveform, sampling_rate=16000)
batch = DataCollatorWithPadding(extractor)([{{"input_values": features["input_values"][0], "labels": 3}}])
with torch.no_grad():
    output = model(**batch)
classifier = pipeline("audio-classification", model=folder, trust_remote_code=True)
predictions = classifier({{"raw": waveform, "sampling_rate": 16000}}, top_k=10)
print(json.dumps({{
    "torchaudio": is_speech_available(),
    "collated": sorted(batch),
    "loss": output.loss.item(),
    "probabilities": output.logits.softmax(-1)[0].tolist(),
    "pipeline": {{p["label"]: p["score"] for p in predictions}},
}}))
"""


@pytest.mark.parametrize(
    "kind, block_torchaudio",
    [("ssast", False), ("ssast", True), ("cnn", False)],
    ids=["ssast", "ssast-no-torchaudio", "cnn"],
)
def test_a_saved_folder_works_with_auto_classes_collator_and_pipeline_without_gtzan_hf(
    tmp_path, kind, block_torchaudio
):
    folder, waveform = tmp_path / "model", tmp_path / "song.npy"
    model = tiny_model(kind).eval()
    model.save_pretrained(folder)
    # A folder saved before the default became AST's: the collator adds a mask, which the model accepts.
    SSASTFeatureExtractor(max_length=FRAMES, return_attention_mask=True).save_pretrained(folder)
    assert json.loads((folder / "preprocessor_config.json").read_text())["return_attention_mask"] is True
    np.save(waveform, songs(1, seconds=2.0)[0])
    features = SSASTFeatureExtractor(max_length=FRAMES)(np.load(waveform), sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        expected = model(**features).logits.softmax(-1)[0]

    code = FRESH_PROCESS.format(folder=str(folder), waveform=str(waveform), block_torchaudio=block_torchaudio)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["torchaudio"] is not block_torchaudio
    assert result["collated"] == ["attention_mask", "input_values", "labels"] and math.isfinite(result["loss"])
    # numpy's filter bank without torchaudio agrees with torchaudio's to float32 rounding
    tolerance = 1e-4 if block_torchaudio else 1e-6
    np.testing.assert_allclose(result["probabilities"], expected.numpy(), rtol=0, atol=tolerance)
    by_label = result["pipeline"]
    np.testing.assert_allclose([by_label[genre] for genre in GTZAN_GENRES], expected.numpy(), rtol=0, atol=tolerance)
