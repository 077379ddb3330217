"""Training: manifests and batches, augmentation, the trainer, evaluation."""
