"""The model: gaussians.py (Gaussians, ModelParams, ModelSpec, splats_at), motion.py (the hybrid motion
basis),
init.py (from depth and k-means), densify.py (adaptive density control). Imports geometry, render, data."""
