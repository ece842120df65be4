"""Training: the loop (plain functions), the trainer (run folder) and checkpoints."""
