"""Training with tracks: the canonical frame, the track-fitted initial motion, the track loss, anchors that
follow density control and come back on resume."""

import json
import os

import numpy as np

from any4d_jax import data
from any4d_jax.data import tracks as tracks_lib
from any4d_jax.io import workdir as workdir_lib
from any4d_jax.model.gaussians import splats_at
from any4d_jax.train import loop
from any4d_jax.train import state as state_lib
from configs import synthetic as synthetic_config


def tiny_config():
    c = synthetic_config.get_config()
    c.data.num_frames, c.data.width, c.data.height = 5, 32, 24
    c.data.num_background, c.data.num_per_object = 300, 60
    c.data.tracks, c.data.num_tracks, c.data.track_query_frames = "ground_truth", 48, 2
    c.eval.num_tracks = 0
    c.model.capacity, c.model.sh_degree, c.model.init_stride, c.model.init_stride_static = 1200, 0, 2, 4
    c.motion.num_generator_channels, c.motion.num_learnable_bases, c.motion.num_time_coeffs = 1, 2, 3
    t = c.train
    t.num_steps, t.densify_from, t.densify_until, t.densify_every = 12, 4, 8, 4
    t.checkpoint_every, t.log_every, t.rigidity_k = 6, 3, 4
    return c


def test_a_run_with_tracks_fits_them_and_resumes_with_its_anchors(tmp_path):
    c = tiny_config()
    frames = data.load(c).train
    tr = frames.tracks
    assert tr is not None and tr.points is not None
    setup = state_lib.make_setup(c, frames)
    # Canonical frame: where the most tracks are visible; the anchors' query times are the query frames.
    assert setup.model.motion.canonical_frame == tracks_lib.canonical_frame(tr)
    assert setup.track_times == tuple(float(q) for q in np.unique(np.asarray(tr.query_frame)))
    assert setup.losses.track == c.train.track_weight
    init = state_lib.init_state(c, setup, frames, state_lib.make_optimizer(c, 1.0))
    # The bases start from the tracks' motion, not from rest.
    assert np.abs(np.asarray(init.params.motion.learnable)).max() > 1e-3
    assert init.anchors.index.shape == (tr.num_tracks, c.train.track_neighbours)

    c.train.stop_after = 6
    workdir = str(tmp_path)
    loop.train(c, frames, workdir, progress=False)
    c.train.stop_after = -1
    state, _ = loop.train(c, frames, workdir, progress=False)  # resumes from step 6
    assert int(state.step) == 12
    idx = np.asarray(state.anchors.index)
    assert np.all(np.asarray(state.active)[idx])  # re-anchored after density control: only live Gaussians
    np.testing.assert_allclose(np.asarray(state.anchors.weight).sum(1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(state.anchors.points), np.asarray(init.anchors.points))
    # The export moves the Gaussians exactly as training did: it reads the canonical frame the run resolved
    # from the tracks (train_cameras.npz), which config.json alone does not give.
    scene = workdir_lib.scene_from_workdir(workdir)
    assert scene.meta["canonical_frame"] == setup.model.motion.canonical_frame
    act = np.asarray(state.active)
    for t in (0.0, 3.0):
        want = np.asarray(splats_at(state.params, state.active, setup.model.motion, t).means)[act]
        np.testing.assert_allclose(np.asarray(scene.splats_at(t).means), want, atol=1e-5)
    rows = [json.loads(line) for line in open(os.path.join(workdir, "train_metrics.jsonl"))]
    track = [r["loss/track"] for r in rows]
    assert len(track) == 4 and all(np.isfinite(track)) and track[-1] > 0


def test_without_tracks_nothing_changes():
    c = tiny_config()
    c.data.tracks = ""
    frames = data.load(c).train
    assert frames.tracks is None
    setup = state_lib.make_setup(c, frames)
    assert setup.model.motion.canonical_frame == c.data.num_frames // 2
    assert setup.losses.track == 0 and setup.track_times == ()
    assert "track_xy" not in state_lib.frames_to_data(frames)
