"""Files: a4d.py (the compact 4D format), ply.py (3DGS PLY), video.py (mp4), workdir.py (a run's folder:
config check, checkpoints, training cameras, metrics log)."""
