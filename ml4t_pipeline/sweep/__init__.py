"""Parameter sweeps: a grid of config variants run on one loaded panel, and overfitting statistics."""
