"""Self-supervised pretraining of SSAST with the `Trainer`: its arguments and a `Trainer` that logs the two parts
of the joint objective."""

from dataclasses import dataclass, field

import torch
from transformers import Trainer, TrainingArguments

from .resume import RandomStateOptional


@dataclass
class PretrainingArguments(TrainingArguments):
    # The on-the-fly crop transform reads its own index columns: the Trainer must not drop them.
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep dataset columns (see Trainer)."})


class PretrainingTrainer(RandomStateOptional, Trainer):
    """`Trainer` for [`SSASTForPreTraining`] that logs, next to the joint `loss`, its two parts (`mpc_loss`,
    `mpg_loss`) and the masked patch classification accuracy (`mpc_accuracy`), averaged since the last log over
    every step and process."""

    OBJECTIVES = ("mpc_loss", "mpg_loss", "mpc_accuracy")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._objective_sums = torch.zeros(len(self.OBJECTIVES))
        self._objective_steps = 0

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        if model.training:
            values = torch.stack([outputs[name].detach().float() for name in self.OBJECTIVES])
            self._objective_sums = self._objective_sums.to(values.device) + values
            self._objective_steps += 1
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        # Training logs come on every process at the same step: the reduction is collective-safe here.
        if "loss" in logs and self._objective_steps:
            means = self.accelerator.reduce(self._objective_sums.clone(), reduction="mean") / self._objective_steps
            logs.update({name: round(value, 4) for name, value in zip(self.OBJECTIVES, means.tolist())})
            self._objective_sums.zero_()
            self._objective_steps = 0
        super().log(logs, *args, **kwargs)
