"""Batch transforms on uint8 tensors: preprocessing (carried by checkpoints) and augmentation."""
