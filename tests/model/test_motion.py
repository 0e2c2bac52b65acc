"""The hybrid motion basis: exactness for rigid motion, identity at t0, masks, regularisers, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from any4d_jax.geometry import lie
from any4d_jax.geometry.knn import knn
from any4d_jax.model import init, motion
from any4d_jax.model.motion import MotionConfig
from any4d_jax.train import losses


def _expm_se3(xi):
    """float64 matrix exponential of a twist (omega, v) by a 40-term series (independent of lie.py)."""
    w, v = np.asarray(xi[:3], np.float64), np.asarray(xi[3:], np.float64)
    A = np.zeros((4, 4))
    A[:3, :3] = [[0, -w[2], w[1]], [w[2], 0, -w[0]], [-w[1], w[0], 0]]
    A[:3, 3] = v
    out, term = np.eye(4), np.eye(4)
    for k in range(1, 40):
        term = term @ A / k
        out = out + term
    return out


def _random_params(cfg, n, key, scale=0.3):
    k = jax.random.split(key, 3)
    K = cfg.num_time_params
    return motion.MotionParams(
        generator=scale * jax.random.normal(k[0], (K, cfg.num_generator_channels, 6)),
        learnable=scale * jax.random.normal(k[1], (K, cfg.num_learnable_bases, 6)),
        weights=jax.random.normal(k[2], (n, cfg.num_bases)),
        generator_pivots=jax.random.normal(k[0], (cfg.num_generator_channels, 3)),
        learnable_pivots=jax.random.normal(k[1], (cfg.num_learnable_bases, 3)),
        mask=jnp.ones((cfg.num_bases,)),
    )


def _points(key, n):
    k1, k2 = jax.random.split(key)
    q = jax.random.normal(k2, (n, 4))
    return jax.random.normal(k1, (n, 3)), q / jnp.linalg.norm(q, axis=-1, keepdims=True)


def test_single_rigid_motion_is_exact_with_generator_bases_alone():
    cfg = MotionConfig(num_frames=5, num_generator_channels=1, num_learnable_bases=0, time_basis="per_frame")
    rng = np.random.default_rng(0)
    xi_gt = np.concatenate([np.zeros((1, 6)), rng.normal(0, 0.8, (4, 6))]).astype(np.float32)
    params = motion.MotionParams(
        generator=jnp.asarray(xi_gt)[:, None, :],  # a_{0,k}(t) = xi_k(t): one channel spans se(3)
        learnable=jnp.zeros((5, 0, 6)),
        weights=jnp.ones((7, 6)),
        generator_pivots=jnp.zeros((1, 3)),
        learnable_pivots=jnp.zeros((0, 3)),
        mask=jnp.ones((6,)),
    )
    means, quats = _points(jax.random.PRNGKey(1), 7)
    for t in range(5):
        T = _expm_se3(xi_gt[t])
        m_t, q_t = motion.apply_motion(means, quats, params, cfg, float(t))
        want = np.asarray(means, np.float64) @ T[:3, :3].T + T[:3, 3]
        np.testing.assert_allclose(m_t, want, atol=2e-5)
        R_t = np.asarray(lie.quat_to_rotmat(q_t), np.float64)
        R_want = T[:3, :3] @ np.asarray(lie.quat_to_rotmat(quats), np.float64)
        np.testing.assert_allclose(R_t, R_want, atol=2e-5)


@pytest.mark.parametrize("basis", ["per_frame", "dct", "bspline"])
def test_identity_at_canonical_frame_and_motion_elsewhere(basis):
    cfg = MotionConfig(
        num_frames=6,
        num_generator_channels=2,
        num_learnable_bases=3,
        time_basis=basis,
        num_time_coeffs=4,
        canonical_frame=2,
    )
    params = _random_params(cfg, 9, jax.random.PRNGKey(2))
    means, quats = _points(jax.random.PRNGKey(3), 9)
    m0, q0 = motion.apply_motion(means, quats, params, cfg, 2.0)
    np.testing.assert_array_equal(motion.gaussian_twists(params, cfg, 2.0), 0.0)
    np.testing.assert_allclose(m0, means, atol=1e-6)
    np.testing.assert_allclose(q0, quats, atol=1e-6)
    m4, _ = motion.apply_motion(means, quats, params, cfg, 4.0)
    assert float(jnp.max(jnp.abs(m4 - means))) > 1e-2


@pytest.mark.parametrize("basis", ["per_frame", "dct", "bspline"])
def test_time_basis_is_exactly_zero_at_the_canonical_frame_under_jit_and_vmap(basis):
    cfg = MotionConfig(num_frames=24, time_basis=basis, num_time_coeffs=16, canonical_frame=12)
    f = lambda t: motion.time_basis(cfg, t)  # noqa: E731
    np.testing.assert_array_equal(jax.jit(f)(jnp.float32(12.0)), 0.0)
    np.testing.assert_array_equal(jax.jit(jax.vmap(f))(jnp.full((3,), 12.0, jnp.float32)), 0.0)
    assert float(jnp.max(jnp.abs(jax.jit(f)(jnp.float32(11.0))))) > 1e-2


def test_bspline_basis_is_a_partition_of_unity_that_reproduces_cubics():
    """Against closed forms: the uniform cubic B-splines sum to 1 on [0, T - 1], each is C2 with support of
    4 spans, and least squares on them reproduces any cubic in t exactly (a property DCT and hat functions
    lack); fewer than 4 control points is refused."""
    T, K = 24, 9
    t = np.linspace(0.0, T - 1.0, 301)
    phi = np.asarray(motion.bspline_basis(jnp.asarray(t, jnp.float32), T, K), np.float64)
    np.testing.assert_allclose(phi.sum(1), 1.0, atol=1e-6)
    assert np.all(phi >= -1e-7)
    h = (T - 1) / (K - 3)
    assert np.all(phi[np.abs(t[:, None] / h - (np.arange(K) - 1)) >= 2.0] == 0)
    cubic = 0.3 - 0.2 * t + 0.05 * t**2 - 0.002 * t**3
    coef, *_ = np.linalg.lstsq(phi, cubic, rcond=None)
    np.testing.assert_allclose(phi @ coef, cubic, atol=2e-4)
    # C2 at a knot: second differences match from both sides.
    knot = h * 2.0
    d2 = lambda a: (
        (  # noqa: E731
            np.asarray(motion.bspline_basis(jnp.float32(a + 1e-2), T, K), np.float64)
            - 2 * np.asarray(motion.bspline_basis(jnp.float32(a), T, K), np.float64)
            + np.asarray(motion.bspline_basis(jnp.float32(a - 1e-2), T, K), np.float64)
        )
        / 1e-4
    )
    np.testing.assert_allclose(d2(knot - 0.05), d2(knot + 0.05), atol=0.05)
    with pytest.raises(ValueError, match="num_time_coeffs >= 4"):
        MotionConfig(num_frames=T, time_basis="bspline", num_time_coeffs=3)


def test_per_frame_trajectories_interpolate_linearly_between_frames():
    cfg = MotionConfig(num_frames=4, num_generator_channels=1, num_learnable_bases=2, time_basis="per_frame")
    params = _random_params(cfg, 5, jax.random.PRNGKey(4))
    x1, x2 = motion.gaussian_twists(params, cfg, 1.0), motion.gaussian_twists(params, cfg, 2.0)
    np.testing.assert_allclose(motion.gaussian_twists(params, cfg, 1.25), 0.75 * x1 + 0.25 * x2, atol=1e-6)


def test_masked_bases_have_no_effect():
    cfg = MotionConfig(num_frames=5, num_generator_channels=2, num_learnable_bases=4)
    params = _random_params(cfg, 6, jax.random.PRNGKey(5))
    mask = motion.basis_mask(cfg, generator_channels=1, learnable_bases=2)
    assert mask.shape == (16,) and float(mask.sum()) == 8
    other = params.replace(
        generator=params.generator.at[:, 1].add(1.0), learnable=params.learnable.at[:, 2:].add(1.0)
    )
    np.testing.assert_allclose(
        motion.gaussian_twists(params.replace(mask=mask), cfg, 3.0),
        motion.gaussian_twists(other.replace(mask=mask), cfg, 3.0),
        atol=1e-6,
    )
    # split_weights is the one slicing of the layout B = 6 C + B_l: generators channel-major, then learnable.
    wg, wl = motion.split_weights(mask, cfg)
    np.testing.assert_array_equal(wg, [[1.0] * 6, [0.0] * 6])
    np.testing.assert_array_equal(wl, [1.0, 1.0, 0.0, 0.0])
    np.testing.assert_array_equal(motion.preset_mask(cfg, "learnable_only"), [0.0] * 12 + [1.0] * 4)
    assert (
        float(
            jnp.max(
                jnp.abs(motion.gaussian_twists(other, cfg, 3.0) - motion.gaussian_twists(params, cfg, 3.0))
            )
        )
        > 0.1
    )
    with pytest.raises(ValueError, match="exceeds the allocation"):
        motion.basis_mask(cfg, generator_channels=3)


def test_gradients_finite_at_zero_motion():
    cfg = MotionConfig(num_frames=5, num_generator_channels=1, num_learnable_bases=2)
    means, quats = _points(jax.random.PRNGKey(6), 8)
    params = motion.init_params(cfg, 8, weights=jnp.ones((8, cfg.num_bases)))
    target = means + 0.1
    nbrs = knn(means, 3)

    def loss(p):
        m, q = motion.apply_motion(means, quats, p, cfg, 3.0)
        return (
            jnp.sum((m - target) ** 2)
            + jnp.sum(q)
            + losses.acceleration_loss(p, cfg)
            + losses.sparsity_loss(p)
            + losses.rigidity_loss(means, m, nbrs)
        )

    g = jax.grad(loss)(params)
    for leaf in jax.tree_util.tree_leaves(g):
        assert np.all(np.isfinite(np.asarray(leaf)))
    assert float(jnp.abs(g.learnable).sum()) > 0 and float(jnp.abs(g.generator).sum()) > 0


def test_regularisers_against_closed_forms():
    cfg = MotionConfig(num_frames=6, num_generator_channels=1, num_learnable_bases=1, time_basis="per_frame")
    t = jnp.arange(6.0)[:, None, None]
    linear = motion.MotionParams(
        generator=0.1 * t * jnp.ones((6, 1, 6)),
        learnable=0.2 * t * jnp.ones((6, 1, 6)),
        weights=jnp.ones((3, 7)),
        generator_pivots=jnp.zeros((1, 3)),
        learnable_pivots=jnp.zeros((1, 3)),
        mask=jnp.ones((7,)),
    )
    assert float(losses.acceleration_loss(linear, cfg)) < 1e-10  # constant velocity: no acceleration
    bumped = linear.replace(learnable=linear.learnable.at[3, 0, 0].add(1.0))
    # A bump of 1 at frame 3: second differences 1, -2, 1 (squares sum to 6) over 4 x 7 normalising terms.
    np.testing.assert_allclose(float(losses.acceleration_loss(bumped, cfg)), 6.0 / (4 * 7), rtol=1e-5)

    pts = jax.random.normal(jax.random.PRNGKey(7), (50, 3))
    nbrs = knn(pts, 4, block=16)
    d = np.linalg.norm(np.asarray(pts)[:, None] - np.asarray(pts)[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    np.testing.assert_array_equal(np.sort(np.asarray(nbrs), 1), np.sort(np.argsort(d, 1)[:, :4], 1))
    R = lie.so3_exp(jnp.array([0.3, -0.5, 0.9]))
    rigid = pts @ R.T + jnp.array([1.0, 2.0, 3.0])
    assert float(losses.rigidity_loss(pts, rigid, nbrs)) < 1e-10
    assert float(losses.rigidity_loss(pts, pts * jnp.array([1.0, 1.0, 1.5]), nbrs)) > 1e-3


def test_kmeans_weights_are_one_hot_per_kind():
    cfg = MotionConfig(num_frames=3, num_generator_channels=2, num_learnable_bases=3)
    pts = jnp.concatenate([jnp.zeros((10, 3)), jnp.ones((10, 3)) * 5, -jnp.ones((10, 3)) * 5])
    pts = pts + 0.01 * jax.random.normal(jax.random.PRNGKey(8), pts.shape)
    w = init.kmeans_weights(pts, cfg, jax.random.PRNGKey(9))
    assert w.shape == (30, 15)
    np.testing.assert_allclose(w[:, :12].sum(1), 6.0)  # one generator channel, all 6 components
    np.testing.assert_allclose(w[:, 12:].sum(1), 1.0)  # one learnable basis
    lab = np.argmax(np.asarray(w[:, 12:]), 1)
    assert len(set(lab[:10])) == len(set(lab[10:20])) == len(set(lab[20:])) == 1 and len(set(lab)) == 3


def test_a_basis_rotates_about_its_pivot():
    """A pure-rotation twist on a basis with pivot p moves x to R (x - p) + p (p itself stays put)."""
    cfg = MotionConfig(num_frames=3, num_generator_channels=1, num_learnable_bases=1, time_basis="per_frame")
    pivot = jnp.array([[1.0, -2.0, 0.5]])
    omega = jnp.array([0.3, -0.4, 0.8])
    coeff = jnp.zeros((3, 1, 6)).at[2, 0, :3].set(omega)
    for gen in (True, False):
        params = motion.MotionParams(
            generator=coeff if gen else jnp.zeros((3, 1, 6)),
            learnable=jnp.zeros((3, 1, 6)) if gen else coeff,
            weights=jnp.concatenate([jnp.ones((4, 6)) * gen, jnp.ones((4, 1)) * (not gen)], axis=1),
            generator_pivots=pivot,
            learnable_pivots=pivot,
            mask=jnp.ones((7,)),
        )
        x = jnp.concatenate([pivot, jax.random.normal(jax.random.PRNGKey(10), (3, 3))])
        q = jnp.tile(jnp.array([[1.0, 0.0, 0.0, 0.0]]), (4, 1))
        moved, _ = motion.apply_motion(x, q, params, cfg, 2.0)
        R = lie.so3_exp(omega)
        np.testing.assert_allclose(moved, (x - pivot) @ R.T + pivot, atol=2e-5)


def test_empty_allocations_are_valid():
    """The `static` baseline has no bases at all; every function must still work (and not move anything)."""
    for c, b in ((0, 0), (0, 3), (2, 0)):
        cfg = MotionConfig(num_frames=4, num_generator_channels=c, num_learnable_bases=b)
        means, quats = _points(jax.random.PRNGKey(11), 5)
        w = init.kmeans_weights(means, cfg, jax.random.PRNGKey(12))
        params = motion.init_params(cfg, 5, w, init.pivots_from_weights(means, w, cfg))
        m, q = motion.apply_motion(means, quats, params, cfg, 2.0)
        np.testing.assert_allclose(m, means, atol=1e-6)
        assert float(losses.acceleration_loss(params, cfg)) == 0.0
