"""Training: the `Trainer` subclasses for fine-tuning and pretraining, and resuming runs. Above the data layer."""
