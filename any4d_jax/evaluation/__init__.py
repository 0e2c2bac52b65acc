"""Evaluation: metrics.py, lpips.py, render.py (the model at many cameras and times), scores.py (per-frame
scores), heldout.py (the synthetic scene's held-out views), dycheck.py (the iPhone protocol)."""
