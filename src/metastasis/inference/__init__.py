"""Using trained checkpoints: batch prediction and evaluation."""
