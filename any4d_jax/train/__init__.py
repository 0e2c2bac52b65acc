"""Training: losses.py, state.py (TrainState, Setup, optimizer, init), step.py (the pure step),
parallel.py (the
step over a device mesh), ablation.py (the step vmapped over variants), loop.py (the one loop; `train`)."""
