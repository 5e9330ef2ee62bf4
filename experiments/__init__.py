"""Command-line experiments: training, the paper's figures, plots."""
