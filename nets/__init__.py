"""PyTorch models for the experiments."""
