"""A `transformers.Trainer` for audio classification of songs: layer-wise learning rates, label smoothing on hard
and soft (mixup) labels, and song-level voting metrics."""

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from transformers import EvalPrediction, Trainer, TrainingArguments, get_scheduler

from ..errors import UserError
from ..metrics import song_level_metrics
from .linear_probe import DEFAULT_C_VALUES
from .resume import RandomStateOptional


@dataclass
class AudioTrainingArguments(TrainingArguments):
    """`TrainingArguments` with the course project's two-speed learning rates and optional layer-wise decay.

    `learning_rate` is the backbone's rate; `head_learning_rate` is the classifier's.
    """

    head_learning_rate: float | None = field(
        default=None,
        metadata={"help": "Learning rate of the classification head (default: `learning_rate`)."},
    )
    layer_decay: float = field(
        default=1.0,
        metadata={
            "help": "Layer-wise learning-rate decay: transformer block i of L trains at learning_rate * "
            "layer_decay ** (L - 1 - i), the embeddings at learning_rate * layer_decay ** L. 1.0 disables it."
        },
    )
    # A fine-tuning run trains, then reports validation and test unless told otherwise (`--do_train false`:
    # evaluate a trained --model_name_or_path only).
    do_train: bool = field(default=True, metadata={"help": "Train (false: evaluate --model_name_or_path only)."})
    do_predict: bool = field(default=True, metadata={"help": "Evaluate the final model on the test split."})
    lr_schedule_per_epoch: bool = field(
        default=False,
        metadata={
            "help": "Hold the learning rate for a whole epoch: `lr_scheduler_type` is evaluated at the epoch count, "
            "as a torch scheduler stepped once per epoch (e.g. the course project's CosineAnnealingLR(T_max=epochs)); "
            "warm-up rounds up to whole epochs."
        },
    )

    linear_probe: bool = field(
        default=False,
        metadata={
            "help": "Train only the head's last linear layer, as a logistic regression on the features of the network "
            "kept as it is (pretrained, or as initialised when from scratch), of every fixed window of the training "
            "and validation songs, its C chosen by cross-validation grouped by song (--probe_c_values, "
            "--probe_cv_folds). No epochs; no validation figures, the validation songs being fitted on."
        },
    )
    probe_c_values: list[float] = field(
        default_factory=lambda: list(DEFAULT_C_VALUES),
        metadata={"help": "Linear probe: the inverse regularisation strengths C tried."},
    )
    probe_cv_folds: int = field(
        default=5, metadata={"help": "Linear probe: folds of the cross-validation that chooses C (grouped by song)."}
    )

    # The datasets' on-the-fly transforms read their own columns: the Trainer must not drop them.
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep dataset columns (see Trainer)."})

    def __post_init__(self):
        # The song index travels with the labels so that evaluation can vote per song, across processes too.
        if self.label_names is None:
            self.label_names = ["labels", "song_index"]
        super().__post_init__()
        if self.lr_schedule_per_epoch and self.max_steps > 0:
            raise UserError("--lr_schedule_per_epoch counts epochs: set --num_train_epochs, not --max_steps.")


class EpochSchedule(torch.optim.lr_scheduler.LambdaLR):
    """A learning-rate schedule held for a whole epoch: `lr_scheduler_type` evaluated at the epoch count, as a torch
    scheduler stepped once per epoch (`--lr_schedule_per_epoch`), while the Trainer steps it at every step."""

    @classmethod
    def from_arguments(cls, optimizer: torch.optim.Optimizer, args, num_training_steps: int) -> "EpochSchedule":
        """`args.lr_scheduler_type` on the epoch scale (warm-up rounded up to whole epochs), read at the epoch each of
        the `num_training_steps` steps falls in."""
        steps_per_epoch = max(1, round(num_training_steps / args.num_train_epochs))
        on_epochs = get_scheduler(
            args.lr_scheduler_type,
            optimizer=optimizer,
            num_warmup_steps=-(-args.get_warmup_steps(num_training_steps) // steps_per_epoch),
            num_training_steps=-(-num_training_steps // steps_per_epoch),
            scheduler_specific_kwargs=args.lr_scheduler_kwargs,
        )
        if not isinstance(on_epochs, torch.optim.lr_scheduler.LambdaLR):
            raise UserError(
                f"lr_schedule_per_epoch needs a schedule of the step count; {args.lr_scheduler_type} is not one."
            )
        return cls(
            optimizer,
            [lambda step, factor=factor: factor(step // steps_per_epoch) for factor in on_epochs.lr_lambdas],
        )


class AudioClassificationTrainer(RandomStateOptional, Trainer):
    """
    `Trainer` for [`SSASTForAudioClassification`] and [`CNNForAudioClassification`] on segmented songs.

    - Optimiser parameter groups, from the model's own declaration (`model.layer_ids()`, `model.no_weight_decay()`):
      the head (the deepest layer id) at `args.head_learning_rate`, the backbone at `args.learning_rate` scaled by
      `args.layer_decay` per layer below the head; no weight decay on the parameters the model exempts.
    - Loss: cross-entropy with `args.label_smoothing_factor`, against class indices or class probabilities (mixup's
      soft labels): training choices, computed here. The model's own loss (`model(x, labels=y).loss`, which a plain
      `Trainer` reports) follows `config.problem_type` as transformers' AST's does.
    - Evaluation: batches carry `song_index`; `compute_metrics` defaults to song-level voting metrics
      (`song_accuracy`, the soft-voting headline, `clip_accuracy`, `song_accuracy_hard`, `song_accuracy_hybrid`,
      `song_accuracy_course_project`, `macro_f1`, `per_genre_accuracy_<name>`).
    - Logs the training accuracy (against the argmax of soft labels under mixup) next to the training loss.
    - Resumes without a checkpoint's random state that holds other Python objects (see [`RandomStateOptional`]).
    """

    # `compute_loss` returns a per-batch mean: the Trainer divides it by the accumulation steps.
    loss_is_scaled_for_ga = False

    def __init__(self, *args, eval_data_collator=None, **kwargs):
        if kwargs.get("compute_metrics") is None:
            kwargs["compute_metrics"] = self._song_metrics
        super().__init__(*args, **kwargs)
        # Evaluation batches must not be mixed up: a training collator with mixup gets a plain twin here.
        self.eval_data_collator = eval_data_collator or self.data_collator
        self._train_correct = torch.zeros((), dtype=torch.long)
        self._train_seen = torch.zeros((), dtype=torch.long)

    def _evaluation_dataloader(self, dataset) -> torch.utils.data.DataLoader:
        # Every window of every song, in order and unmixed: the evaluation collator, and never
        # `dataloader_drop_last`, which is for training batches.
        args = self.args
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=args.eval_batch_size,
            collate_fn=self.eval_data_collator,
            num_workers=args.dataloader_num_workers,
            pin_memory=args.dataloader_pin_memory,
            persistent_workers=args.dataloader_persistent_workers,
            prefetch_factor=args.dataloader_prefetch_factor,
        )
        return self.accelerator.prepare(loader)

    def get_eval_dataloader(self, eval_dataset=None):
        if isinstance(eval_dataset, str):
            eval_dataset = self.eval_dataset[eval_dataset]
        eval_dataset = self.eval_dataset if eval_dataset is None else eval_dataset
        if eval_dataset is None:
            raise ValueError("Trainer: evaluation requires an eval_dataset.")
        return self._evaluation_dataloader(eval_dataset)

    def get_test_dataloader(self, test_dataset):
        return self._evaluation_dataloader(test_dataset)

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None):
        # A scheduler given to the Trainer is kept; a per-epoch one is built anew at every `train()`, as the Trainer
        # builds its own.
        ours = self.lr_scheduler is None or isinstance(self.lr_scheduler, EpochSchedule)
        if not (self.args.lr_schedule_per_epoch and ours):
            return super().create_scheduler(num_training_steps, optimizer)
        self.lr_scheduler = EpochSchedule.from_arguments(optimizer or self.optimizer, self.args, num_training_steps)
        return self.lr_scheduler

    def create_model_card(self, **kwargs) -> None:
        # A fine-tuning run writes its own card with results (gtzan_hf.reports.model_card); keep it when pushing.
        if not (Path(self.args.output_dir) / "README.md").exists():
            super().create_model_card(**kwargs)

    def _song_metrics(self, prediction: EvalPrediction) -> dict:
        labels, song_index = prediction.label_ids
        id2label = self.model.config.id2label
        names = [id2label[i] for i in range(len(id2label))]
        metrics = song_level_metrics(prediction.predictions, labels, song_index, names)
        for name, accuracy in metrics.pop("per_genre_accuracy").items():
            metrics[f"per_genre_accuracy_{name}"] = accuracy
        return metrics

    def get_decay_parameter_names(self, model: nn.Module) -> list[str]:
        no_weight_decay = model.no_weight_decay()
        return [name for name, _ in model.named_parameters() if name not in no_weight_decay]

    def parameter_groups(self, model: nn.Module) -> list[dict]:
        """
        Optimiser groups keyed by (learning rate, weight decay). The model declares a depth per parameter
        (`layer_ids()`, the head deepest at `H`): depth `d < H` trains at `learning_rate * layer_decay ** (H - 1 - d)`,
        so that for SSAST block `i` of `L` gets `layer_decay ** (L - 1 - i)` and the embeddings `layer_decay ** L`.
        """
        layer_ids = model.layer_ids()
        head_depth = max(layer_ids.values())
        decay_names = set(self.get_decay_parameter_names(model))
        head_learning_rate = self.args.head_learning_rate or self.args.learning_rate
        groups: dict[tuple[float, float], list[nn.Parameter]] = {}
        for name, parameter in model.named_parameters():
            if not parameter.requires_grad:
                continue
            depth = layer_ids[name]
            if depth == head_depth:
                learning_rate = head_learning_rate
            else:
                learning_rate = self.args.learning_rate * self.args.layer_decay ** (head_depth - 1 - depth)
            weight_decay = self.args.weight_decay if name in decay_names else 0.0
            groups.setdefault((learning_rate, weight_decay), []).append(parameter)
        return [
            {"params": params, "lr": learning_rate, "weight_decay": weight_decay}
            for (learning_rate, weight_decay), params in groups.items()
        ]

    def create_optimizer(self, model=None) -> torch.optim.Optimizer:
        if self.optimizer is None:
            opt_model = self.model if model is None else model
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            self.optimizer = optimizer_cls(self.parameter_groups(opt_model), **optimizer_kwargs)
        return self.optimizer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        inputs.pop("song_index", None)
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        logits = outputs["logits"]
        # class indices `(batch,)`, or mixup's class probabilities `(batch, num_labels)`
        soft = labels.is_floating_point()
        loss = nn.functional.cross_entropy(
            logits, labels.to(logits.dtype) if soft else labels, label_smoothing=self.args.label_smoothing_factor
        )
        if model.training:
            targets = labels.argmax(dim=-1) if soft else labels
            self._train_correct = self._train_correct.to(logits.device) + (logits.argmax(-1) == targets).sum()
            self._train_seen = self._train_seen.to(logits.device) + targets.numel()
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        # Training logs are written on every process at the same step: summing the counts here is collective-safe.
        if "loss" in logs and self._train_seen.item() > 0:
            correct = self.accelerator.reduce(self._train_correct.clone(), reduction="sum")
            seen = self.accelerator.reduce(self._train_seen.clone(), reduction="sum")
            logs["train_accuracy"] = round(correct.item() / seen.item(), 4)
            self._train_correct.zero_()
            self._train_seen.zero_()
        super().log(logs, *args, **kwargs)
