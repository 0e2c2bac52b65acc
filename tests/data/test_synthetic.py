"""The synthetic dynamic scene: the promised kinds of ground-truth motion, consistently rendered frames."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from any4d_jax.data import synthetic

TINY = synthetic.SyntheticConfig(num_frames=5, width=40, height=30, num_background=600, num_per_object=150)


def _pairwise(x):
    x = np.asarray(x, np.float64)
    return np.linalg.norm(x[:, None] - x[None], axis=-1)


def test_motion_kinds_rigid_translating_nonrigid_static():
    scene = synthetic.build_scene(TINY)
    g = np.asarray(scene.groups)
    m0 = synthetic.scene_at(scene, TINY, 0.0).means
    m2 = synthetic.scene_at(scene, TINY, 2.3).means
    np.testing.assert_allclose(m0, scene.splats.means, atol=1e-6)  # t = 0 is the canonical frame
    bg, sp, bo, sh = (
        (g == synthetic.BACKGROUND),
        (g == synthetic.SPINNER),
        (g == synthetic.BOUNCER),
        (g == synthetic.SHEET),
    )
    np.testing.assert_array_equal(m2[bg], m0[bg])
    # Spinner: rigid (distances kept) and really rotating.
    np.testing.assert_allclose(_pairwise(m2[sp]), _pairwise(m0[sp]), atol=1e-5)
    assert np.abs(np.asarray(m2[sp] - m0[sp])).max() > 0.1
    # Bouncer: one common translation.
    d = np.asarray(m2[bo] - m0[bo])
    np.testing.assert_allclose(d, np.broadcast_to(d[0], d.shape), atol=1e-6)
    assert np.linalg.norm(d[0]) > 0.1
    # Sheet: not rigid.
    assert np.abs(_pairwise(m2[sh]) - _pairwise(m0[sh])).max() > 0.02  # rigid would be ~1e-6


def test_frames_are_seeded_and_consistent():
    scene, train, ev = synthetic.make_dataset(TINY)
    T, E = TINY.num_frames, len(TINY.eval_azimuths_deg)
    assert train.rgb.shape == (T, 30, 40, 3) and ev.rgb.shape == (E * T, 30, 40, 3)
    assert train.depth.shape == (T, 30, 40) and train.mask.shape == (T, 30, 40)
    np.testing.assert_array_equal(ev.times, np.tile(np.arange(T), E))
    # Same seed, same frames; another seed, other frames.
    _, train2, _ = synthetic.make_dataset(TINY)
    np.testing.assert_array_equal(train.rgb, train2.rgb)
    _, train3, _ = synthetic.make_dataset(dataclasses.replace(TINY, seed=1))
    assert float(jnp.abs(train.rgb - train3.rgb).mean()) > 1e-3
    # The foreground mask covers some, not all, pixels; depth is positive where something was drawn.
    assert 0.02 < float(train.mask.mean()) < 0.8
    assert float(train.depth.min()) >= 0 and float(train.depth.max()) > 1.0
    # The moving camera moves; the evaluation cameras are static over time.
    assert float(jnp.abs(train.cameras.viewmat[0] - train.cameras.viewmat[-1]).max()) > 0.1
    np.testing.assert_array_equal(ev.cameras.viewmat[0], ev.cameras.viewmat[T - 1])


def test_eval_cameras_lie_within_the_training_span():
    tr = synthetic.train_cameras(TINY).center
    ev = synthetic.eval_cameras(TINY).center
    az = lambda c: np.degrees(
        np.arctan2(np.asarray(c[:, 0] - synthetic.LOOK_AT[0]), -np.asarray(c[:, 2] - synthetic.LOOK_AT[2]))
    )  # noqa: E731
    assert az(tr).min() < az(ev).min() and az(ev).max() < az(tr).max()
    assert jax.numpy.all(jnp.isfinite(ev))


def test_spin_and_bounce_knobs_match_closed_forms():
    T = TINY.num_frames
    for spin, bounces, lift in [(90.0, 1, -0.7), (180.0, 2, 0.0)]:
        cfg = dataclasses.replace(TINY, spin_deg=spin, bounces=bounces)
        scene = synthetic.build_scene(cfg)
        g = np.asarray(scene.groups)
        m0 = np.asarray(synthetic.scene_at(scene, cfg, 0.0).means)
        # The spinner turns by spin_deg about the vertical axis through its centre over the whole clip.
        m1 = np.asarray(synthetic.scene_at(scene, cfg, float(T - 1)).means)
        c = np.asarray(synthetic.SPINNER_CENTRE)
        a, b = (m0 - c)[g == synthetic.SPINNER][:, [0, 2]], (m1 - c)[g == synthetic.SPINNER][:, [0, 2]]
        ang = np.degrees(np.arctan2(a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0], (a * b).sum(-1)))
        np.testing.assert_allclose(np.abs(ang), spin, atol=1e-3)
        np.testing.assert_allclose(np.asarray(m1 - m0)[g == synthetic.SPINNER][:, 1], 0.0, atol=1e-5)
        # Mid-clip the ball is at the top of a bounce (one bounce) or back on the ground (two bounces).
        mid = np.asarray(synthetic.scene_at(scene, cfg, 0.5 * (T - 1)).means)
        np.testing.assert_allclose((mid - m0)[g == synthetic.BOUNCER][:, 1], lift, atol=1e-5)
