"""Batches of windows, with optional mixup."""

import torch


class SSASTDataCollator:
    """
    Stacks items of [`FbankWindowTransform`] into a batch, with optional mixup for training.

    Returns `{"input_values": (B, T, F) float32, "labels": (B,) int64, "song_index": (B,) int64}`. With
    `mixup_alpha > 0`, each example is blended with another of the batch with a weight drawn from
    Beta(alpha, alpha) (one per example), and `labels` become `(B, num_labels)` float32 soft labels (each row sums
    to 1). Use a collator without mixup for evaluation.
    """

    def __init__(self, num_labels: int, mixup_alpha: float = 0.0):
        self.num_labels = num_labels
        self.mixup_alpha = mixup_alpha

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        input_values = torch.stack([torch.as_tensor(f["input_values"], dtype=torch.float32) for f in features])
        labels = torch.tensor([int(f["labels"]) for f in features], dtype=torch.int64)
        song_index = torch.tensor([int(f["song_index"]) for f in features], dtype=torch.int64)
        if self.mixup_alpha > 0:
            weight = torch.distributions.Beta(self.mixup_alpha, self.mixup_alpha).sample((len(features),))
            partner = torch.randperm(len(features))
            input_values = torch.lerp(input_values[partner], input_values, weight[:, None, None])
            one_hot = torch.nn.functional.one_hot(labels, self.num_labels).float()
            labels = torch.lerp(one_hot[partner], one_hot, weight[:, None])
        return {"input_values": input_values, "labels": labels, "song_index": song_index}


def evaluation_dataloader(dataset, batch_size: int, num_labels: int) -> torch.utils.data.DataLoader:
    """Fixed windows in order, batched without mixup: for prediction and reports."""
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=SSASTDataCollator(num_labels))
