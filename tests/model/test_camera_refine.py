"""Camera refinement: the correction's closed form, exact known perturbations, the penalty and gauge, and the
corrections recovering a known perturbation through the train step's own loss (the renderer's gradient
w.r.t. the camera)."""

import dataclasses
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from any4d_jax.data import camera_noise, synthetic
from any4d_jax.geometry import lie
from any4d_jax.geometry.cameras import Camera
from any4d_jax.model import camera_refine, motion
from any4d_jax.model.gaussians import ModelParams, ModelSpec, splats_at
from any4d_jax.render import RenderConfig, render
from any4d_jax.render.sh import rgb_to_sh_dc
from any4d_jax.train import state as state_lib
from any4d_jax.train import step as step_lib


def _rodrigues(w):
    """Independent numpy rotation matrix of axis-angle w (3,)."""
    t = np.linalg.norm(w)
    k = np.array([[0, -w[2], w[1]], [w[2], 0, -w[0]], [-w[1], w[0], 0]]) / t
    return np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * k @ k


def _viewmats(num=5, seed=0):
    rng = np.random.default_rng(seed)
    out = np.tile(np.eye(4), (num, 1, 1))
    for i in range(num):
        out[i, :3, :3] = _rodrigues(rng.normal(size=3))
        out[i, :3, 3] = rng.normal(size=3)
    return out.astype(np.float32)


def test_a_correction_is_a_rotation_then_a_shift_in_the_camera_frame():
    vm = _viewmats(1)[0]
    w = np.array([0.01, -0.02, 0.015])
    # Pure rotation: exp([w, 0]) @ V = [Rod(w) R, Rod(w) t].
    got = np.asarray(camera_refine.correct(jnp.asarray(vm), jnp.asarray(np.r_[w, 0, 0, 0], jnp.float32)))
    want = np.eye(4)
    want[:3, :3] = _rodrigues(w) @ vm[:3, :3]
    want[:3, 3] = _rodrigues(w) @ vm[:3, 3]
    np.testing.assert_allclose(got, want, atol=2e-6)
    # Pure shift of v (scene units = scale x the stored value): the camera translation moves by scale v.
    v = np.array([0.3, -0.1, 0.2])
    got = np.asarray(camera_refine.correct(jnp.asarray(vm), jnp.asarray(np.r_[0, 0, 0, v], jnp.float32), 2.5))
    np.testing.assert_allclose(got[:3, :3], vm[:3, :3], atol=1e-6)
    np.testing.assert_allclose(got[:3, 3], vm[:3, 3] + 2.5 * v, atol=2e-6)
    err = camera_refine.pose_errors(got[None], vm[None])
    np.testing.assert_allclose(err["translation"], [2.5 * np.linalg.norm(v)], rtol=1e-5)
    # Zero is the identity, bit for bit.
    same = camera_refine.correct(jnp.asarray(vm), jnp.zeros(6))
    np.testing.assert_array_equal(np.asarray(same), vm)


def test_the_gauge_frame_is_never_corrected_and_the_penalty_ignores_it():
    vm = jnp.asarray(_viewmats(4))
    deltas = jnp.full((4, 6), 0.1, jnp.float32)
    out = np.asarray(camera_refine.refined_viewmats(vm, deltas, 1.0, gauge=0))
    np.testing.assert_array_equal(out[0], np.asarray(vm[0]))
    assert np.all(np.abs(out[1:] - np.asarray(vm[1:])).max(axis=(1, 2)) > 0.05)
    np.testing.assert_allclose(float(camera_refine.penalty(deltas, 2, 0)), 6 * 0.01, rtol=1e-6)
    assert float(camera_refine.penalty(deltas, 0, 0)) == 0.0
    g = jax.jit(
        jax.grad(lambda d: jnp.sum(camera_refine.refined_viewmats(vm, d)) + camera_refine.penalty(d, 0))
    )(deltas)
    np.testing.assert_array_equal(np.asarray(g[0]), 0.0)
    # The penalty of one frame touches that frame's row only (the corrections' row-sparse Adam needs it).
    gp = np.asarray(jax.grad(lambda d: camera_refine.penalty(d, jnp.int32(2), 0))(deltas))
    np.testing.assert_allclose(gp[2], 0.2, rtol=1e-6)
    np.testing.assert_array_equal(gp[[0, 1, 3]], 0.0)
    assert camera_refine.refined_viewmats(vm, None) is vm


def test_known_perturbations_are_exact_seeded_and_spare_the_first_camera():
    vm = _viewmats(6)
    noisy = camera_noise.perturb(vm, 1.5, 0.04, seed=3)
    err = camera_refine.pose_errors(noisy, vm)
    np.testing.assert_array_equal(noisy[0], vm[0])
    np.testing.assert_allclose(err["rotation_deg"][1:], 1.5, atol=2e-3)
    np.testing.assert_allclose(err["translation"][1:], 0.04, atol=2e-5)
    np.testing.assert_array_equal(camera_noise.perturb(vm, 1.5, 0.04, seed=3), noisy)
    assert not np.allclose(camera_noise.perturb(vm, 1.5, 0.04, seed=4), noisy)
    # The rotation turns about the camera centre: rotation alone leaves the centre where it was.
    rot_only = camera_refine.pose_errors(camera_noise.perturb(vm, 2.0, 0.0, seed=1), vm)
    np.testing.assert_allclose(rot_only["translation"], 0.0, atol=2e-5)


SIZE = (48, 36)


@pytest.fixture(scope="module")
def static_scene():
    """(ModelParams of a static random scene (coloured blobs in front of the cameras), its true cameras, the
    step's data dict with images rendered from them by the model itself (so only the cameras can be wrong),
    Setup, state)."""
    cfg = synthetic.SyntheticConfig(num_frames=4, width=SIZE[0], height=SIZE[1], train_arc_deg=30)
    cams = synthetic.train_cameras(cfg)
    rng = np.random.default_rng(0)
    n = 900
    means = synthetic.LOOK_AT + rng.uniform(-1.2, 1.2, size=(n, 3)) * np.array([1.0, 0.8, 0.6])
    mc = motion.MotionConfig(num_frames=4, num_generator_channels=0, num_learnable_bases=1, num_time_coeffs=2)
    params = ModelParams(
        means=jnp.asarray(means, jnp.float32),
        quats=jnp.tile(jnp.array([1.0, 0, 0, 0]), (n, 1)),
        log_scales=jnp.full((n, 3), np.log(0.06), jnp.float32),
        opacity_logits=jnp.full((n,), 1.5, jnp.float32),
        sh=rgb_to_sh_dc(jnp.asarray(rng.uniform(size=(n, 3)), jnp.float32))[:, None, :],
        motion=motion.init_params(mc, n, jnp.zeros((n, 1), jnp.float32)),
    )
    setup = state_lib.Setup(
        model=ModelSpec(motion=mc, render=RenderConfig(validate=False)),
        losses=state_lib.LossWeights(ssim_lambda=0.0, camera=1e-3),
        densify=None,
        width=SIZE[0],
        height=SIZE[1],
        time_ramp_steps=0,
        rigidity_k=1,
        camera_scale=state_lib.scene_extent(cams),
        camera_gauge=0,
    )
    state = types.SimpleNamespace(active=jnp.ones((n,), bool), neighbours=None, step=jnp.int32(0))
    spl = splats_at(params, state.active, mc, 0.0)
    bg = jnp.asarray(setup.model.background)
    rgb = jax.jit(
        jax.vmap(lambda v, k: render(spl, Camera(v, k, SIZE[0], SIZE[1]), bg, setup.model.render).rgb)
    )(cams.viewmat, cams.K)
    data = {
        "viewmat": cams.viewmat,
        "K": cams.K,
        "time": jnp.zeros(4),
        "index": jnp.arange(4, dtype=jnp.int32),
        "rgb": rgb,
    }
    return params, cams, data, setup, state


def test_corrections_recover_a_known_perturbation_through_the_training_loss(static_scene):
    params, cams, data, setup, state = static_scene
    n = params.means.shape[0]
    noisy = camera_noise.perturb(cams.viewmat, 1.5, 0.015 * 3.6, seed=0)
    d = {**data, "viewmat": jnp.asarray(noisy)}

    def loss(cam):
        p = params.replace(camera=cam)
        per = jax.vmap(lambda f: step_lib.loss_fn(p, jnp.zeros((n, 2)), state, f, setup)[0])(d)
        return jnp.mean(per)

    opt = optax.adam(2e-3)

    @jax.jit
    def step(cam, s):
        val, g = jax.value_and_grad(loss)(cam)
        up, s = opt.update(g, s)
        return optax.apply_updates(cam, up), s, val

    cam = camera_refine.init(4)
    s = opt.init(cam)
    first = None
    for _ in range(150):
        cam, s, val = step(cam, s)
        first = float(val) if first is None else first
    refined = np.asarray(camera_refine.refined_viewmats(jnp.asarray(noisy), cam, setup.camera_scale))
    before = camera_refine.pose_errors(noisy, np.asarray(cams.viewmat))
    after = camera_refine.pose_errors(refined, np.asarray(cams.viewmat))
    np.testing.assert_array_equal(np.asarray(cam[0]), 0.0)  # the gauge frame has no gradient
    assert float(val) < 0.3 * first
    assert np.all(after["rotation_deg"][1:] < 0.3 * before["rotation_deg"][1:]), (before, after)
    assert np.all(after["translation"][1:] < 0.5 * before["translation"][1:]), (before, after)


def test_refinement_is_on_by_default_only_for_videos_from_a_diffusers_generator():
    from configs import image_to_4d
    from configs import synthetic as synthetic_config

    scene, prompt = synthetic_config.get_config(), image_to_4d.get_config()
    assert not camera_refine.enabled(scene) and not camera_refine.enabled(prompt)  # exact cameras
    prompt.generator.name = "diffusers"
    assert camera_refine.enabled(prompt)
    prompt.train.camera_refine, scene.train.camera_refine = False, True  # an explicit value wins
    assert not camera_refine.enabled(prompt) and camera_refine.enabled(scene)


def test_only_static_gaussians_carry_the_corrections_gradient(static_scene):
    """static_gradient_only: the same image, and the correction's gradient equal to that of a render in which
    the non-static Gaussians are held (by a constant matrix) where the current correction puts them; none
    static: no gradient; the moving half's share of the plain gradient is gone."""
    params, cams, data, setup, state = static_scene
    spl = splats_at(params, state.active, setup.model.motion, 0.0)
    n = spl.means.shape[0]
    static = jnp.arange(n) % 2 == 0
    vm, k = cams.viewmat[1], cams.K[1]
    bg = jnp.asarray(setup.model.background)
    weights = jnp.asarray(np.random.default_rng(1).uniform(size=(SIZE[1], SIZE[0], 3)), jnp.float32)
    d0 = jnp.asarray([0.004, -0.003, 0.002, 0.003, 0.001, -0.002], jnp.float32)

    def image(s, v):
        return render(s, Camera(v, k, SIZE[0], SIZE[1]), bg, setup.model.render).rgb

    @jax.jit
    def ours(d):
        v = camera_refine.correct(vm, d)
        return jnp.sum(weights * image(camera_refine.static_gradient_only(spl, v, static), v))

    held = camera_refine.correct(vm, d0)

    @jax.jit
    def reference(d):  # non-static Gaussians pre-moved by V'(d)^-1 V'(d0): they stay put in the image
        v = camera_refine.correct(vm, d)
        fix = jnp.linalg.inv(v) @ held
        moved = spl.means @ fix[:3, :3].T + fix[:3, 3]
        means = jnp.where(static[:, None], spl.means, moved)
        q = lie.quat_multiply(lie.rotmat_to_quat(fix[:3, :3])[None], spl.quats)
        quats = jnp.where(static[:, None], spl.quats, q)
        return jnp.sum(weights * image(spl.replace(means=means, quats=quats), v))

    plain = jax.jit(lambda d: jnp.sum(weights * image(spl, camera_refine.correct(vm, d))))
    np.testing.assert_allclose(float(ours(d0)), float(plain(d0)), rtol=1e-5)
    g = np.asarray(jax.grad(ours)(d0))
    # The reference holds the moving half with a constant matrix, not a stop-gradient (central differences of
    # a tile rasterizer are too rough at the needed step for a 5% check; the renderer's own gradient is
    # checked against them elsewhere).
    np.testing.assert_allclose(g, np.asarray(jax.grad(reference)(d0)), rtol=1e-3, atol=1e-3 * np.abs(g).max())
    g_all = np.asarray(jax.grad(plain)(d0))
    assert np.linalg.norm(g - g_all) > 0.1 * np.linalg.norm(g_all)  # the moving half's share is gone
    nothing = np.asarray(
        jax.grad(
            lambda d: jnp.sum(
                weights
                * image(
                    camera_refine.static_gradient_only(spl, camera_refine.correct(vm, d), static & False),
                    camera_refine.correct(vm, d),
                )
            )
        )(d0)
    )
    np.testing.assert_allclose(nothing, 0.0, atol=1e-6 * np.abs(g_all).max())


def test_the_step_takes_the_camera_gradient_from_static_gaussians_or_all_when_none_is(static_scene):
    """train.camera_static_only in the step: static = all motion weights 0. A scene with no static Gaussian
    (data without a foreground mask) falls back to every Gaussian, so the camera still learns."""
    params, cams, data, setup, state = static_scene
    n = params.means.shape[0]
    frame = {k: v[1] for k, v in data.items()}
    cam0 = camera_refine.init(4).at[1].set(jnp.asarray([0.004, -0.003, 0.002, 0.003, 0.001, -0.002]))

    def grad(weights, static_only):
        p = params.replace(camera=cam0, motion=params.motion.replace(weights=weights))
        s = dataclasses.replace(setup, camera_static_only=static_only)
        f = lambda c: step_lib.loss_fn(p.replace(camera=c), jnp.zeros((n, 2)), state, frame, s)[0]  # noqa: E731
        return np.asarray(jax.jit(jax.grad(f))(cam0))[1]

    ones, zeros = jnp.ones((n, 1)), jnp.zeros((n, 1))
    half = jnp.where((jnp.arange(n) % 2 == 0)[:, None], 0.0, 1.0)
    # The basis trajectories are zero, so the weights move nothing: only the gradient's path differs.
    np.testing.assert_allclose(grad(zeros, True), grad(zeros, False), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(grad(ones, True), grad(ones, False), rtol=1e-5, atol=1e-7)
    g_half, g_all = grad(half, True), grad(half, False)
    assert np.linalg.norm(g_half - g_all) > 0.1 * np.linalg.norm(g_all)
