"""Pure math, the bottom layer (imports nothing from any4d_jax): lie.py (quaternions, 6D rotations,
so(3)/se(3)
exp/log), cameras.py (the Camera pytree), trajectory.py (per-frame cameras of a video), knn.py (brute
force)."""
