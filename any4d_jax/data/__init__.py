"""Data sources: every one yields `Frames` (images with the cameras they were taken or generated under)."""
