"""The harder, iPhone-like synthetic benchmark (any4d_jax/data/handheld.py): a hand-held camera with a 30 cm
baseline and jitter, 64 frames, a rigid car, an articulated arm, a non-rigid blob, a ball rolling behind a
box, and two static held-out cameras like DyCheck's. Ground truth for every point's motion, so 3D tracking
is scored in metres (1 unit = 0.5 m).

python -m experiments.run --config=configs/handheld.py [--config.data.tracks=ground_truth] [--workdir=runs/h]

Starts from configs/synthetic.py (every knob exists); only what differs is set here.
"""

import ml_collections

from configs import synthetic


def get_config() -> ml_collections.ConfigDict:
    c = synthetic.get_config()
    c.data.scene = "handheld"  # default | handheld: which procedural scene data.source=synthetic renders
    c.data.num_frames = 64  # time steps T (one training view per step)
    c.data.width = 160  # image width in pixels
    c.data.height = 120  # image height in pixels
    c.model.capacity = 24000  # the scene has 15k ground-truth Gaussians; room for density control
    c.model.init_fraction = 0.6  # a third more of the capacity at initialisation (64 frames of static parts)
    c.train.num_steps = 2400  # twice the default: 64 frames, each seen ~37 times
    c.train.time_ramp_steps = 1200  # the frame window reaches the whole clip at half the run
    c.train.densify_until = 2000  # density control until 5/6 of the run
    c.eval.novel_arc_deg = 50.0  # the novel orbit stays near the hand-held path (a phone's view of it)
    return c
