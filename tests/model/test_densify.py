"""Density control on hand-made states: which Gaussians are cloned, split and pruned, where the children go,
what they carry, what happens without room, and which optimizer rows are reset."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from any4d_jax.model import densify, motion
from any4d_jax.model.gaussians import ModelParams

CFG = densify.DensifyConfig(
    grad_threshold=1e-3, percent_dense=0.01, min_opacity=0.05, max_screen_fraction=0.5, split_factor=1.6
)
EXTENT = 10.0  # clone below 0.01 * 10 = 0.1, split above; prune larger than 0.5 * 10 = 5
MC = motion.MotionConfig(num_frames=3, num_generator_channels=1, num_learnable_bases=2, num_time_coeffs=2)


def _logit(p):
    return float(np.log(p / (1 - p)))


def _state(capacity=8):
    """Slots 0..4 active: 0 small + high gradient (clone), 1 big + high gradient (split), 2 faint (prune),
    3 ordinary (kept), 4 huge (prune); slots 5.. free."""
    n = capacity
    scales = np.full((n, 3), 0.05, np.float32)
    scales[0], scales[1], scales[4] = 0.01, 0.5, 6.0
    opac = np.full((n,), _logit(0.5), np.float32)
    opac[2] = _logit(0.01)
    rng = np.random.default_rng(0)
    params = ModelParams(
        means=jnp.asarray(rng.normal(size=(n, 3)), jnp.float32),
        quats=jnp.asarray(rng.normal(size=(n, 4)), jnp.float32),
        log_scales=jnp.log(jnp.asarray(scales)),
        opacity_logits=jnp.asarray(opac),
        sh=jnp.asarray(rng.uniform(size=(n, 1, 3)), jnp.float32),
        motion=motion.init_params(MC, n, jnp.asarray(rng.normal(size=(n, MC.num_bases)), jnp.float32)),
    )
    active = jnp.arange(n) < 5
    grads = np.zeros((n,), np.float32)
    grads[[0, 1]] = 5e-3  # mean over 2 visible steps: 2.5e-3 > 1e-3
    grads[3] = 1e-3  # 5e-4 < 1e-3
    stats = densify.DensifyState(grad_accum=jnp.asarray(grads), vis_count=jnp.full((n,), 2.0))
    return params, active, stats


def _optimizer_state(params):
    opt = optax.multi_transform(
        {k: optax.adam(0.1) for k in ("means", "quats", "log_scales", "opacity_logits", "sh")}
        | {"motion_traj": optax.adam(0.1), "motion_weights": optax.adam(0.1), "frozen": optax.set_to_zero()},
        lambda p: p.labels(),
    )
    state = opt.init(params)
    grads = jax.tree_util.tree_map(jnp.ones_like, params)
    _, state = opt.update(grads, state, params)  # non-zero moments everywhere
    return state


def test_clone_split_prune_counts_destinations_and_values():
    params, active, stats = _state()
    new, new_active, _, counts = densify.densify(
        params, active, None, stats, EXTENT, jax.random.PRNGKey(1), CFG
    )
    counts = {k: int(v) for k, v in counts.items()}
    assert counts == {"cloned": 1, "split": 1, "pruned": 2, "no_room": 0, "active": 5}
    # Pruned 2 and 4 free their slots; the free slots in order are 2, 4, 5, ...: the clone of 0 goes to 2,
    # the split child of 1 to 4.
    np.testing.assert_array_equal(np.asarray(new_active), [True] * 5 + [False] * 3)
    for name in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        np.testing.assert_array_equal(getattr(new, name)[2], getattr(params, name)[0], err_msg=name)
        np.testing.assert_array_equal(getattr(new, name)[0], getattr(params, name)[0], err_msg=name)
        np.testing.assert_array_equal(getattr(new, name)[3], getattr(params, name)[3], err_msg=name)
    # Children inherit the parent's motion weights.
    np.testing.assert_array_equal(new.motion.weights[2], params.motion.weights[0])
    np.testing.assert_array_equal(new.motion.weights[4], params.motion.weights[1])
    np.testing.assert_array_equal(new.motion.weights[1], params.motion.weights[1])
    # Split: both halves shrink by the split factor and move inside the parent (within 4 std per axis).
    shrunk = np.log(0.5 / 1.6)
    np.testing.assert_allclose(new.log_scales[1], shrunk, rtol=1e-6)
    np.testing.assert_allclose(new.log_scales[4], shrunk, rtol=1e-6)
    for slot in (1, 4):
        d = np.abs(np.asarray(new.means[slot]) - np.asarray(params.means[1]))
        assert 0 < np.max(d) < 4 * 0.5 * np.sqrt(3), (slot, d)
    assert not np.allclose(new.means[1], new.means[4])
    # Non-per-Gaussian leaves are untouched.
    np.testing.assert_array_equal(new.motion.generator, params.motion.generator)
    np.testing.assert_array_equal(new.motion.mask, params.motion.mask)


def test_requests_without_a_free_slot_are_counted_not_lost():
    params, active, stats = _state(capacity=6)
    active = jnp.ones((6,), bool)  # every slot in use: 2 and 4 are pruned and give the only room
    stats = stats.replace(grad_accum=stats.grad_accum.at[jnp.array([3, 5])].set(5e-3))  # 0, 1, 3, 5 want
    _, new_active, _, counts = densify.densify(
        params, active, None, stats, EXTENT, jax.random.PRNGKey(2), CFG
    )
    counts = {k: int(v) for k, v in counts.items()}
    # 4 requests (0 clone, 1 split, 3 and 5 clone), 2 free slots after pruning: 2 granted in request order.
    assert counts["no_room"] == 2 and counts["cloned"] + counts["split"] == 2 and counts["pruned"] == 2
    assert counts["active"] == int(new_active.sum()) == 6


def test_optimizer_rows_of_changed_gaussians_are_reset():
    params, active, stats = _state()
    opt_state = _optimizer_state(params)
    _, _, new_opt, _ = densify.densify(params, active, opt_state, stats, EXTENT, jax.random.PRNGKey(1), CFG)
    found = []

    def check(old, new):
        if isinstance(old, ModelParams):
            for name in ("means", "sh"):
                a, b = getattr(old, name), getattr(new, name)
                if hasattr(a, "shape"):
                    found.append(name)
                    # Changed rows: 1 (split parent), 2 and 4 (children in pruned slots); 0 and 3 keep theirs.
                    np.testing.assert_array_equal(np.asarray(b)[[1, 2, 4]], 0.0)
                    np.testing.assert_array_equal(np.asarray(b)[[0, 3]], np.asarray(a)[[0, 3]])
                    assert np.all(np.asarray(a)[[0, 3]] != 0)
            if hasattr(old.motion.weights, "shape"):
                found.append("weights")
                np.testing.assert_array_equal(np.asarray(new.motion.weights)[[1, 2, 4]], 0.0)
            if hasattr(old.motion.generator, "shape"):  # a trajectory: not per Gaussian, untouched
                found.append("generator")
                np.testing.assert_array_equal(new.motion.generator, old.motion.generator)
        return new

    is_params = lambda x: isinstance(x, ModelParams)  # noqa: E731
    jax.tree_util.tree_map(check, opt_state, new_opt, is_leaf=is_params)
    # Adam's mu and nu of each group were visited.
    assert found.count("means") == 2 and found.count("weights") == 2 and found.count("generator") == 2


def test_accumulate_sums_ndc_gradient_norms_where_visible():
    stats = densify.DensifyState.zeros(3)
    g2d = jnp.array(
        [[[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [1.0, 1.0], [1.0, 1.0]]]
    )  # (F=2, N, 2)
    radii = jnp.array([[[1, 1], [1, 1], [0, 2]], [[1, 1], [0, 0], [2, 2]]])  # visible iff both radii > 0
    out = densify.accumulate(stats, g2d, radii, width=40, height=20)
    # NDC scaling: x by W / 2 = 20, y by H / 2 = 10.
    want = [20.0 + 10.0, 20.0, np.hypot(20.0, 10.0)]
    np.testing.assert_allclose(out.grad_accum, want, rtol=1e-6)
    np.testing.assert_array_equal(out.vis_count, [2, 1, 1])
