"""Training: the trainer loop, checkpoints and the end-to-end run."""
