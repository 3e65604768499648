import inspect
import json
import logging

import pytest
import torch
from transformers import Trainer

from gtzan_hf.data.collator import SSASTDataCollator
from gtzan_hf.models.configuration_cnn import CNNConfig
from gtzan_hf.models.modeling_cnn import CNNForAudioClassification
from gtzan_hf.training.trainer import AudioClassificationTrainer, AudioTrainingArguments

NUM_LABELS = 3
FRAMES, BINS = 32, 16


class BandSongs(torch.utils.data.Dataset):
    """Songs whose class is the mel band that carries energy; each song is cut into `segments` segments."""

    def __init__(self, num_songs: int, segments: int, seed: int):
        generator = torch.Generator().manual_seed(seed)
        self.items = []
        for song in range(num_songs):
            label = song % NUM_LABELS
            for _ in range(segments):
                values = torch.randn(FRAMES, BINS, generator=generator)
                band = slice(label * 5, label * 5 + 5)
                values[:, band] += 2.0
                self.items.append({"input_values": values, "labels": label, "song_index": song})

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


def tiny_cnn():
    torch.manual_seed(0)
    config = CNNConfig(
        num_mel_bins=BINS,
        max_length=FRAMES,
        channels=[4, 8],
        hidden_size=8,
        dropout=0.0,
        id2label={i: f"genre{i}" for i in range(NUM_LABELS)},
        label2id={f"genre{i}": i for i in range(NUM_LABELS)},
    )
    return CNNForAudioClassification(config)


def training_arguments(output_dir, **overrides):
    settings = dict(
        output_dir=str(output_dir),
        num_train_epochs=5,
        per_device_train_batch_size=8,
        per_device_eval_batch_size=16,
        learning_rate=1e-2,
        head_learning_rate=1e-2,
        label_smoothing_factor=0.1,
        eval_strategy="epoch",
        save_strategy="epoch",
        logging_strategy="epoch",
        metric_for_best_model="song_accuracy",
        load_best_model_at_end=True,
        save_total_limit=1,
        report_to=[],
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
    )
    settings.update(overrides)
    return AudioTrainingArguments(**settings)


def optimizer_arguments(output_dir, **overrides):
    return training_arguments(output_dir, eval_strategy="no", load_best_model_at_end=False, **overrides)


def test_cnn_learns_and_song_metrics_are_reported(tmp_path):
    trainer = AudioClassificationTrainer(
        model=tiny_cnn(),
        args=training_arguments(tmp_path),
        train_dataset=BandSongs(48, 2, seed=0),
        eval_dataset=BandSongs(9, 3, seed=1),
    )
    before = trainer.evaluate()
    trainer.train()
    after = trainer.evaluate()
    assert after["eval_loss"] < before["eval_loss"]
    assert after["eval_song_accuracy"] >= 0.9
    assert set(after) >= {
        "eval_clip_accuracy",
        "eval_song_accuracy_hard",
        "eval_song_accuracy_hybrid",
        "eval_macro_f1",
        "eval_per_genre_accuracy_genre0",
    }
    history = trainer.state.log_history
    train_logs = [entry for entry in history if "loss" in entry]
    assert len(train_logs) == 5 and all(0.0 <= entry["train_accuracy"] <= 1.0 for entry in train_logs)
    assert train_logs[-1]["train_accuracy"] > train_logs[0]["train_accuracy"]
    assert after["eval_num_songs"] == 9 and after["eval_num_clips"] == 27


def test_best_checkpoint_is_chosen_on_validation_and_disk_is_bounded(tmp_path):
    trainer = AudioClassificationTrainer(
        model=tiny_cnn(),
        args=training_arguments(tmp_path, num_train_epochs=3),
        train_dataset=BandSongs(48, 2, seed=0),
        eval_dataset=BandSongs(9, 3, seed=1),
    )
    trainer.train()
    evaluations = [entry for entry in trainer.state.log_history if "eval_song_accuracy" in entry]
    best = max(evaluations, key=lambda entry: entry["eval_song_accuracy"])
    assert trainer.state.best_metric == best["eval_song_accuracy"]
    # the best checkpoint and the last one at most
    checkpoints = sorted(path.name for path in tmp_path.glob("checkpoint-*"))
    assert 1 <= len(checkpoints) <= 2
    assert trainer.state.best_model_checkpoint.endswith(f"checkpoint-{best['step']}")


def test_resume_continues_from_the_saved_step(tmp_path):
    datasets = dict(train_dataset=BandSongs(16, 1, seed=0), eval_dataset=BandSongs(6, 2, seed=1))
    first = AudioClassificationTrainer(
        model=tiny_cnn(), args=training_arguments(tmp_path, num_train_epochs=2, save_total_limit=3), **datasets
    )
    first.train()
    steps_per_epoch = 2
    assert first.state.global_step == 2 * steps_per_epoch

    resumed = AudioClassificationTrainer(
        model=tiny_cnn(), args=training_arguments(tmp_path, num_train_epochs=3, save_total_limit=3), **datasets
    )
    resumed.train(resume_from_checkpoint=str(tmp_path / f"checkpoint-{2 * steps_per_epoch}"))
    assert resumed.state.global_step == 3 * steps_per_epoch
    trained_steps = [entry["step"] for entry in resumed.state.log_history if "loss" in entry]
    assert trained_steps[-1] == 3 * steps_per_epoch
    state = json.loads((tmp_path / f"checkpoint-{3 * steps_per_epoch}" / "trainer_state.json").read_text())
    assert state["global_step"] == 3 * steps_per_epoch


class NotNumbers:
    """An object in a random state file: torch's safe loader refuses the file."""


def test_resume_goes_on_without_a_random_state_that_pickles_an_object(tmp_path, caplog):
    datasets = dict(train_dataset=BandSongs(16, 1, seed=0), eval_dataset=BandSongs(6, 2, seed=1))
    first = AudioClassificationTrainer(
        model=tiny_cnn(), args=training_arguments(tmp_path, num_train_epochs=1), **datasets
    )
    first.train()
    checkpoint = tmp_path / "checkpoint-2"
    torch.save({"python": NotNumbers()}, checkpoint / "rng_state.pth")

    resumed = AudioClassificationTrainer(
        model=tiny_cnn(), args=training_arguments(tmp_path, num_train_epochs=2), **datasets
    )
    with caplog.at_level(logging.WARNING, logger="gtzan_hf.training.resume"):
        resumed.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.state.global_step == 4
    (message,) = [r.getMessage() for r in caplog.records]
    assert message.startswith(f"The random state saved in {checkpoint} was refused: it holds Python objects")
    assert "GLOBAL test_trainer.NotNumbers" in message and message.endswith("differ from an uninterrupted run.")


def test_the_trainer_smooths_hard_and_soft_labels_and_the_model_does_not(tmp_path):
    """Label smoothing and mixup's class probabilities are the Trainer's: its loss is smoothed cross-entropy against
    both; the model's own stays transformers' plain cross-entropy, and its config learns nothing of the smoothing."""
    trainer = AudioClassificationTrainer(
        model=tiny_cnn(), args=optimizer_arguments(tmp_path, label_smoothing_factor=0.2), train_dataset=[]
    )
    model = trainer.model.eval()
    values = torch.randn(4, FRAMES, BINS)
    hard = torch.tensor([0, 1, 2, 0])
    soft = 0.7 * torch.nn.functional.one_hot(hard, NUM_LABELS).float() + 0.3 * torch.full((4, NUM_LABELS), 1 / 3)
    loss_hard = trainer.compute_loss(model, {"input_values": values, "labels": hard, "song_index": hard})
    loss_soft = trainer.compute_loss(model, {"input_values": values, "labels": soft, "song_index": hard})
    with torch.no_grad():
        logits = model(values).logits
        torch.testing.assert_close(loss_hard, torch.nn.functional.cross_entropy(logits, hard, label_smoothing=0.2))
        smoothed = soft * 0.8 + 0.2 / NUM_LABELS
        torch.testing.assert_close(loss_soft, -(smoothed * logits.log_softmax(-1)).sum(-1).mean())
        torch.testing.assert_close(model(values, labels=hard).loss, torch.nn.functional.cross_entropy(logits, hard))
    assert "label_smoothing" not in model.config.to_dict()


def test_evaluation_batches_are_every_window_unmixed_while_training_batches_mix_and_drop(tmp_path):
    trainer = AudioClassificationTrainer(
        model=tiny_cnn(),
        args=training_arguments(tmp_path, dataloader_drop_last=True, per_device_eval_batch_size=4),
        train_dataset=BandSongs(10, 1, seed=0),
        eval_dataset=BandSongs(5, 2, seed=1),
        data_collator=SSASTDataCollator(NUM_LABELS, mixup_alpha=0.4),
        eval_data_collator=SSASTDataCollator(NUM_LABELS),
    )
    training = list(trainer.get_train_dataloader())
    assert [len(batch["labels"]) for batch in training] == [8]  # 10 windows: the partial batch is dropped
    assert training[0]["labels"].shape == (8, NUM_LABELS)  # mixup's class probabilities
    for loader in (trainer.get_eval_dataloader(), trainer.get_test_dataloader(BandSongs(5, 2, seed=1))):
        batches = list(loader)
        assert [len(batch["labels"]) for batch in batches] == [4, 4, 2]
        assert torch.cat([batch["song_index"] for batch in batches]).tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
        assert all(batch["labels"].dtype == torch.int64 for batch in batches)


def test_a_per_epoch_schedule_is_built_anew_at_every_training_and_a_given_one_is_kept(tmp_path):
    args = optimizer_arguments(tmp_path, num_train_epochs=2, lr_schedule_per_epoch=True, lr_scheduler_type="cosine")
    trainer = AudioClassificationTrainer(model=tiny_cnn(), args=args, train_dataset=BandSongs(16, 1, seed=0))
    for _ in range(2):
        trainer.train()
        rates = [entry["learning_rate"] for entry in trainer.state.log_history if "loss" in entry]
        assert rates == [1e-2, pytest.approx(5e-3)]  # each epoch's rate: a cosine over 2 epochs, from the start
    optimizer = torch.optim.SGD(trainer.model.parameters(), lr=1e-3)
    given = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0)
    trainer = AudioClassificationTrainer(
        model=trainer.model, args=args, train_dataset=BandSongs(16, 1, seed=0), optimizers=(optimizer, given)
    )
    assert trainer.create_scheduler(4, optimizer) is given


def test_the_one_private_trainer_method_resuming_overrides_is_still_there():
    """transformers has no public hook for a checkpoint's random state: `RandomStateOptional` overrides
    `Trainer._load_rng_state(checkpoint)`, and a release that renames it or changes its signature fails here."""
    method = getattr(Trainer, "_load_rng_state", None)
    assert method is not None, "transformers.Trainer._load_rng_state is gone: update training/resume.py"
    assert list(inspect.signature(method).parameters) == ["self", "checkpoint"]
    assert "self._load_rng_state(resume_from_checkpoint)" in inspect.getsource(Trainer), "no longer called on resume"


def learning_rates_and_weight_decays(optimizer, model) -> tuple[dict, dict]:
    """The learning rate and the weight decay of each named parameter in the optimiser's groups."""
    names = {id(parameter): name for name, parameter in model.named_parameters()}
    rates, decays = {}, {}
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            rates[names[id(parameter)]] = group["lr"]
            decays[names[id(parameter)]] = group["weight_decay"]
    assert len(rates) == len(names)
    return rates, decays


@pytest.mark.parametrize("layer_decay", [1.0, 0.5])
def test_cnn_parameter_groups_and_weight_decay(tmp_path, layer_decay):
    trainer = AudioClassificationTrainer(
        model=tiny_cnn(),
        args=optimizer_arguments(
            tmp_path, learning_rate=1e-3, head_learning_rate=1e-2, weight_decay=0.05, layer_decay=layer_decay
        ),
        train_dataset=[],
    )
    rates, decays = learning_rates_and_weight_decays(trainer.create_optimizer(), trainer.model)
    norms = {
        f"{module_name}.weight"
        for module_name, module in trainer.model.named_modules()
        if isinstance(module, torch.nn.BatchNorm2d)
    }
    for name in rates:
        if name.startswith("classifier."):
            expected = 1e-2
        else:  # features.<k>: conv, norm, ReLU, pool per block, so block k // 4 of 2
            expected = 1e-3 * layer_decay ** (2 - 1 - int(name.split(".")[1]) // 4)
        assert rates[name] == pytest.approx(expected), name
        is_norm_or_bias = name.endswith("bias") or name in norms
        assert decays[name] == (0.0 if is_norm_or_bias else 0.05), name


def test_parameter_groups_follow_the_models_declaration(tmp_path):
    class AllHeadCNN(CNNForAudioClassification):
        """Declares every parameter part of the head and none exempt from weight decay."""

        def layer_ids(self):
            return {name: 0 for name, _ in self.named_parameters()}

        def no_weight_decay(self):
            return set()

    torch.manual_seed(0)
    trainer = AudioClassificationTrainer(
        model=AllHeadCNN(tiny_cnn().config),
        args=optimizer_arguments(tmp_path, learning_rate=1e-3, head_learning_rate=1e-2, weight_decay=0.05),
        train_dataset=[],
    )
    rates, decays = learning_rates_and_weight_decays(trainer.create_optimizer(), trainer.model)
    assert set(rates.values()) == {1e-2} and set(decays.values()) == {0.05}


@pytest.mark.parametrize("layer_decay", [1.0, 0.5])
def test_ssast_layer_wise_learning_rates(tmp_path, layer_decay):
    from gtzan_hf.models.configuration_ssast import SSASTConfig
    from gtzan_hf.models.modeling_ssast import SSASTForAudioClassification

    config = SSASTConfig.from_size(
        "tiny", num_hidden_layers=2, max_length=64, freq_stride=16, time_stride=16, num_labels=NUM_LABELS
    )
    model = SSASTForAudioClassification(config)
    trainer = AudioClassificationTrainer(
        model=model,
        args=optimizer_arguments(
            tmp_path, learning_rate=5e-6, head_learning_rate=1e-4, layer_decay=layer_decay, weight_decay=0.01
        ),
        train_dataset=[],
    )
    rates, decays = learning_rates_and_weight_decays(trainer.create_optimizer(), model)
    # The documented rule: block i of L at learning_rate * layer_decay ** (L - 1 - i), the embeddings at
    # layer_decay ** L, the final norm at learning_rate, the head at head_learning_rate.
    for name in rates:
        if name.startswith("classifier."):
            expected = 1e-4
        elif name.startswith("ssast.encoder.layer."):
            expected = 5e-6 * layer_decay ** (2 - 1 - int(name.split(".")[3]))
        elif name.startswith("ssast.embeddings."):
            expected = 5e-6 * layer_decay**2
        else:
            assert name.startswith("ssast.layernorm."), name
            expected = 5e-6
        assert rates[name] == pytest.approx(expected), name
        token = name.split(".")[-1] in ("position_embeddings", "cls_token", "distillation_token")
        no_decay = name.endswith("bias") or "layernorm" in name or token
        assert decays[name] == (0.0 if no_decay else 0.01), name
