"""Tests for any4d_jax.geometry against independent float64 numpy references."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import fast_jit
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from any4d_jax.geometry import lie as g


def jit(f):
    return fast_jit(f)


# Jitted once at module level; jax re-traces automatically when the shape or dtype changes (x64 tests).
quat_to_rotmat = jit(g.quat_to_rotmat)
rotmat_to_quat = jit(g.rotmat_to_quat)
quat_multiply = jit(g.quat_multiply)
so3_exp = jit(g.so3_exp)
so3_log = jit(g.so3_log)
se3_exp = jit(g.se3_exp)
se3_log = jit(g.se3_log)
rot6d_to_rotmat = jit(g.rot6d_to_rotmat)
rotmat_to_rot6d = jit(g.rotmat_to_rot6d)
quat_conjugate = jit(g.quat_conjugate)
quat_normalize = jit(g.quat_normalize)
hat = jit(g.hat)
vee = jit(g.vee)
se3_apply = jit(g.se3_apply)
se3_inverse = jit(g.se3_inverse)

PI = math.pi
# Angles covering both Taylor branches, the closed forms, the near-pi branch of the log and pi itself.
ANGLES = np.array([0.0, 1e-8, 1e-4, 0.3, 1.0, 2.0, 3.0, PI - 1e-2, PI - 1e-3, PI - 1e-4, PI])


# ---------------------------------------------------------------------------------------------------------
# Independent float64 references.
# ---------------------------------------------------------------------------------------------------------


def np_expm(A: np.ndarray, terms: int = 30) -> np.ndarray:
    """Matrix exponential of ``A: (..., n, n)`` by scaling-and-squaring + truncated Taylor series, float64."""
    A = np.asarray(A, np.float64)
    norm = np.max(np.abs(A).sum(-1))
    k = max(0, int(np.ceil(np.log2(norm / 0.5)))) if norm > 0 else 0
    X = A / 2.0**k
    out = np.broadcast_to(np.eye(A.shape[-1]), A.shape).copy()
    term = out.copy()
    for i in range(1, terms + 1):
        term = term @ X / i
        out = out + term
    for _ in range(k):
        out = out @ out
    return out


def np_hat(w: np.ndarray) -> np.ndarray:
    w = np.asarray(w, np.float64)
    W = np.zeros(w.shape[:-1] + (3, 3))
    W[..., 0, 1], W[..., 0, 2] = -w[..., 2], w[..., 1]
    W[..., 1, 0], W[..., 1, 2] = w[..., 2], -w[..., 0]
    W[..., 2, 0], W[..., 2, 1] = -w[..., 1], w[..., 0]
    return W


def np_twist_matrix(xi: np.ndarray) -> np.ndarray:
    xi = np.asarray(xi, np.float64)
    M = np.zeros(xi.shape[:-1] + (4, 4))
    M[..., :3, :3] = np_hat(xi[..., :3])
    M[..., :3, 3] = xi[..., 3:]
    return M


def np_quat_mul(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Hamilton product written out component-wise (independent of the library's vector form)."""
    a1, b1, c1, d1 = np.moveaxis(p, -1, 0)
    a2, b2, c2, d2 = np.moveaxis(q, -1, 0)
    return np.stack(
        [
            a1 * a2 - b1 * b2 - c1 * c2 - d1 * d2,
            a1 * b2 + b1 * a2 + c1 * d2 - d1 * c2,
            a1 * c2 - b1 * d2 + c1 * a2 + d1 * b2,
            a1 * d2 + b1 * c2 - c1 * b2 + d1 * a2,
        ],
        axis=-1,
    )


def unit_axes(rng: np.random.Generator, n: int) -> np.ndarray:
    a = rng.normal(size=(n, 3))
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


def axis_angle_batch(seed: int = 0) -> np.ndarray:
    """One random axis per entry of ``ANGLES``: ``(len(ANGLES), 3)`` float64 axis-angle vectors."""
    return unit_axes(np.random.default_rng(seed), len(ANGLES)) * ANGLES[:, None]


def f32(x) -> jnp.ndarray:
    return jnp.asarray(np.asarray(x), jnp.float32)


def assert_rotation(R, atol=2e-6):
    R = np.asarray(R, np.float64)
    eye = np.broadcast_to(np.eye(3), R.shape)
    np.testing.assert_allclose(np.swapaxes(R, -1, -2) @ R, eye, atol=atol)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=atol)


# ---------------------------------------------------------------------------------------------------------
# Quaternions.
# ---------------------------------------------------------------------------------------------------------


def test_quat_to_rotmat_matches_conjugation_and_axis_angle():
    rng = np.random.default_rng(1)
    q = rng.normal(size=(32, 4)) * rng.uniform(0.1, 3.0, size=(32, 1))  # not normalised
    R = np.asarray(quat_to_rotmat(f32(q)), np.float64)
    assert_rotation(R)
    # R p == q p q^* (pure-quaternion conjugation in float64).
    qn = q / np.linalg.norm(q, axis=-1, keepdims=True)
    p = rng.normal(size=(32, 3))
    p_quat = np.concatenate([np.zeros((32, 1)), p], axis=-1)
    qc = qn * np.array([1.0, -1.0, -1.0, -1.0])
    rotated = np_quat_mul(np_quat_mul(qn, p_quat), qc)[:, 1:]
    np.testing.assert_allclose(np.einsum("nij,nj->ni", R, p), rotated, atol=5e-6)
    # q = (cos(t/2), sin(t/2) a) is the rotation expm(t hat(a)).
    w = axis_angle_batch(2)
    t = np.linalg.norm(w, axis=-1, keepdims=True)
    a = np.where(t > 0, w / np.maximum(t, 1e-300), 0.0)
    q_aa = np.concatenate([np.cos(t / 2), np.sin(t / 2) * a], axis=-1)
    np.testing.assert_allclose(quat_to_rotmat(f32(q_aa)), np_expm(np_hat(w)), atol=2e-6)


def test_quat_rotmat_round_trip_up_to_sign():
    rng = np.random.default_rng(3)
    q = rng.normal(size=(64, 4))
    # Add quaternions that exercise every Shepperd branch (w, x, y, z largest) incl. exact 180 deg turns.
    special = np.array(
        [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0.01, 0.7, -0.7, 0.1], [1e-4, 0, 0.6, 0.8]]
    )
    q = np.concatenate([q, special, -q[:4]], axis=0)
    qn = q / np.linalg.norm(q, axis=-1, keepdims=True)
    q_back = np.asarray(rotmat_to_quat(quat_to_rotmat(f32(q))), np.float64)
    np.testing.assert_allclose(np.linalg.norm(q_back, axis=-1), 1.0, atol=1e-6)
    err = np.minimum(np.abs(q_back - qn).max(-1), np.abs(q_back + qn).max(-1))
    assert err.max() < 2e-6, err.max()
    # Canonical sign w >= 0 (w == 0 is allowed to have either sign).
    assert np.all(q_back[:, 0] >= 0.0)
    # rotmat -> quat -> rotmat on rotations near and at pi (where w ~ 0).
    R = np_expm(np_hat(axis_angle_batch(4)))
    np.testing.assert_allclose(quat_to_rotmat(rotmat_to_quat(f32(R))), R, atol=3e-6)


def test_quat_multiply_matches_matrix_product_and_conjugate():
    rng = np.random.default_rng(5)
    q1, q2 = rng.normal(size=(2, 16, 4))
    R12 = quat_to_rotmat(quat_multiply(f32(q1), f32(q2)))
    R1, R2 = quat_to_rotmat(f32(q1)), quat_to_rotmat(f32(q2))
    np.testing.assert_allclose(R12, R1 @ R2, atol=3e-6)
    np.testing.assert_allclose(quat_multiply(f32(q1), f32(q2)), np_quat_mul(q1, q2), rtol=1e-5, atol=1e-5)
    # Broadcasting of leading dims: (16, 4) x (4,).
    np.testing.assert_allclose(
        quat_multiply(f32(q1), f32(q2[0])), np_quat_mul(q1, q2[:1]), rtol=1e-5, atol=1e-5
    )
    # Conjugate: q q^* = (|q|^2, 0, 0, 0) and R(q^*) = R(q)^T.
    qc = quat_conjugate(f32(q1))
    expected = np.zeros_like(q1)
    expected[:, 0] = np.sum(q1**2, axis=-1)
    np.testing.assert_allclose(quat_multiply(f32(q1), qc), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(quat_to_rotmat(qc), np.swapaxes(np.asarray(R1), -1, -2), atol=1e-6)
    # quat_normalize: unit norm, direction kept, zero stays finite.
    qn = np.asarray(quat_normalize(f32(q1)))
    np.testing.assert_allclose(qn, q1 / np.linalg.norm(q1, axis=-1, keepdims=True), atol=1e-6)
    assert np.all(np.isfinite(np.asarray(quat_normalize(jnp.zeros((16, 4))))))


# ---------------------------------------------------------------------------------------------------------
# 6D rotations, hat / vee.
# ---------------------------------------------------------------------------------------------------------


def test_rot6d_round_trip_and_gram_schmidt():
    R = np_expm(np_hat(axis_angle_batch(6)))
    np.testing.assert_allclose(rot6d_to_rotmat(rotmat_to_rot6d(f32(R))), R, atol=2e-6)
    np.testing.assert_allclose(rotmat_to_rot6d(f32(R)), np.concatenate([R[..., 0], R[..., 1]], -1))
    # Random non-orthogonal inputs: orthonormal output whose first two columns are the QR factor of [a1 a2].
    rng = np.random.default_rng(7)
    d6 = rng.normal(size=(32, 6)) * 3.0
    Rg = np.asarray(rot6d_to_rotmat(f32(d6)), np.float64)
    assert_rotation(Rg)
    A = np.stack([d6[:, :3], d6[:, 3:]], axis=-1)  # (32, 3, 2) columns a1, a2
    Q, Rr = np.linalg.qr(A)
    Q = Q * np.sign(np.diagonal(Rr, axis1=-2, axis2=-1))[:, None, :]
    np.testing.assert_allclose(Rg[..., :2], Q, atol=1e-5)
    np.testing.assert_allclose(Rg[..., 2], np.cross(Q[..., 0], Q[..., 1]), atol=1e-5)


def test_hat_vee():
    rng = np.random.default_rng(8)
    w, p = rng.normal(size=(2, 8, 3))
    W = np.asarray(hat(f32(w)), np.float64)
    np.testing.assert_allclose(np.einsum("nij,nj->ni", W, p), np.cross(w, p), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(vee(f32(W)), w, rtol=1e-6)
    np.testing.assert_array_equal(W, -np.swapaxes(W, -1, -2))


# ---------------------------------------------------------------------------------------------------------
# SO(3).
# ---------------------------------------------------------------------------------------------------------


def test_so3_exp_matches_series_expm():
    w = axis_angle_batch(10)
    R = so3_exp(f32(w))
    np.testing.assert_allclose(R, np_expm(np_hat(w)), atol=2e-6)
    assert_rotation(R)
    # Several leading dims.
    np.testing.assert_allclose(so3_exp(f32(w[:, None])), np.asarray(R)[:, None], atol=1e-6)


def test_so3_log_round_trip():
    w = axis_angle_batch(11)  # last angle is exactly pi
    R = so3_exp(f32(w))
    w_back = np.asarray(so3_log(R), np.float64)
    w32 = np.asarray(f32(w), np.float64)
    # Angles < pi: relative accuracy for tiny angles, ~1e-6 absolute near pi.
    err = np.linalg.norm(w_back - w32, axis=-1)[:-1]
    tol = 1e-5 * np.linalg.norm(w32, axis=-1)[:-1] + 1e-6
    assert np.all(err <= tol), (err, tol)
    np.testing.assert_allclose(w_back[0], 0.0, atol=0.0)
    # At pi (up to float32 rounding of the input) the log is defined up to the sign of the axis.
    np.testing.assert_allclose(so3_exp(f32(w_back)), R, atol=2e-6)
    # Rotations built in float64 and rounded once: pi - 1e-3 and pi - 1e-4 (near-pi branch).
    axes = unit_axes(np.random.default_rng(12), len(ANGLES))
    angles = np.where(np.arange(len(ANGLES)) % 2 == 0, PI - 1e-3, PI - 1e-4)[:, None]
    w_back = np.asarray(so3_log(f32(np_expm(np_hat(axes * angles)))), np.float64)
    np.testing.assert_allclose(w_back, axes * angles, atol=3e-6)


def test_so3_log_at_exactly_pi():
    axes = np.concatenate([np.eye(3), unit_axes(np.random.default_rng(13), len(ANGLES) - 3)])
    R = 2.0 * axes[:, :, None] * axes[:, None, :] - np.eye(3)  # rotation by exactly pi: 2 a a^T - I
    w = np.asarray(so3_log(f32(R)), np.float64)
    assert np.all(np.isfinite(w))
    np.testing.assert_allclose(np.linalg.norm(w, axis=-1), PI, atol=1e-6)
    # Axis is defined up to sign at pi.
    np.testing.assert_allclose(np.abs(np.sum(w / PI * axes, axis=-1)), 1.0, atol=1e-6)
    np.testing.assert_allclose(so3_exp(f32(w)), R, atol=2e-6)


# ---------------------------------------------------------------------------------------------------------
# SE(3).
# ---------------------------------------------------------------------------------------------------------


def _twists(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([axis_angle_batch(seed), rng.normal(size=(len(ANGLES), 3))], axis=-1)


def test_se3_exp_matches_series_expm():
    xi = _twists(20)
    T = np.asarray(se3_exp(f32(xi)), np.float64)
    np.testing.assert_allclose(T, np_expm(np_twist_matrix(xi)), atol=5e-6)
    np.testing.assert_array_equal(T[:, 3], np.broadcast_to([0.0, 0.0, 0.0, 1.0], (len(xi), 4)))


def test_se3_log_round_trip():
    xi = _twists(21)  # last rotation angle is exactly pi
    xi_back = np.asarray(se3_log(se3_exp(f32(xi))), np.float64)
    np.testing.assert_allclose(xi_back[:-1], np.asarray(f32(xi))[:-1], atol=2e-5)
    # At pi the log is ambiguous: check exp(log(T)) == T instead (float64-built transforms).
    T = np_expm(np_twist_matrix(_twists(22)))
    np.testing.assert_allclose(se3_exp(se3_log(f32(T))), T, atol=2e-5)


def test_se3_apply_and_inverse():
    rng = np.random.default_rng(23)
    T = np_expm(np_twist_matrix(rng.normal(size=(8, 6))))
    p = rng.normal(size=(8, 3))
    expected = np.einsum("nij,nj->ni", T, np.concatenate([p, np.ones((8, 1))], -1))[:, :3]
    np.testing.assert_allclose(se3_apply(f32(T), f32(p)), expected, atol=1e-5)
    # Broadcasting: one transform applied to many points.
    np.testing.assert_allclose(se3_apply(f32(T[0]), f32(p)), (p @ T[0, :3, :3].T) + T[0, :3, 3], atol=1e-5)
    Tinv = np.asarray(se3_inverse(f32(T)), np.float64)
    np.testing.assert_allclose(Tinv, np.linalg.inv(T), atol=1e-5)
    np.testing.assert_allclose(Tinv @ T, np.broadcast_to(np.eye(4), T.shape), atol=1e-5)


# ---------------------------------------------------------------------------------------------------------
# Gradients.
# ---------------------------------------------------------------------------------------------------------

_W = np.random.default_rng(30).normal(size=(4, 4))  # fixed weights for the scalar test functions


# Scalar functions of each map (weights fixed so that every output entry matters).  The weights are cast to
# the input dtype explicitly: mixing a captured float64 numpy constant into traces made both with and
# without x64 trips a jax tracing cache (lax.mul float32/float64 mismatch).
def _w(x, rows, cols):
    return jnp.asarray(_W[rows, cols], dtype=x.dtype)


SCALAR_FNS = {
    "so3_exp": lambda w: jnp.sum(g.so3_exp(w) * _w(w, slice(0, 3), slice(0, 3))),
    "so3_log": lambda R: jnp.sum(g.so3_log(R) * _w(R, 0, slice(0, 3))),
    "se3_exp": lambda xi: jnp.sum(g.se3_exp(xi) * _w(xi, slice(None), slice(None))),
    "se3_log": lambda T: jnp.sum(g.se3_log(T) * _w(T, slice(0, 2), slice(0, 3)).reshape(6)),
    "quat_to_rotmat": lambda q: jnp.sum(g.quat_to_rotmat(q) * _w(q, slice(0, 3), slice(0, 3))),
}
# Batched gradients / values, compiled once per dtype and always called on the same batch of points.
GRAD_FNS = {k: jit(jax.vmap(jax.grad(f))) for k, f in SCALAR_FNS.items()}
VALUE_FNS = {k: jit(jax.vmap(f)) for k, f in SCALAR_FNS.items()}


def _grad_points():
    """Evaluation points per function at angles 0 (exactly zero input), 1e-5, 0.7, 2.0 and pi - 0.01."""
    axis = np.array([0.48, -0.6, 0.64])
    axis /= np.linalg.norm(axis)
    angles = np.array([0.0, 1e-5, 0.7, 2.0, PI - 0.01])
    w = axis[None] * angles[:, None]
    v = np.array([0.3, -1.2, 0.5])
    xi = np.concatenate([w, np.broadcast_to(v, w.shape)], -1)
    xi[0, 3:] = 0.0  # exactly zero twist
    q = np.concatenate([np.cos(angles / 2)[:, None], np.sin(angles / 2)[:, None] * axis], -1)
    return {
        "so3_exp": w,
        "so3_log": np_expm(np_hat(w)),  # exactly the identity at index 0
        "se3_exp": xi,
        "se3_log": np_expm(np_twist_matrix(xi)),
        "quat_to_rotmat": q * 1.3,  # not normalised
    }


def _central_fd(name: str, points: np.ndarray, h: float) -> np.ndarray:
    """Central finite differences of ``SCALAR_FNS[name]`` at every point, evaluated as one batch."""
    m, shape = points.shape[0], points.shape[1:]
    n = int(np.prod(shape))
    steps = np.eye(n).reshape((1, n) + shape) * h
    xs = np.concatenate([points[:, None] + steps, points[:, None] - steps], axis=1)  # (m, 2n, ...)
    vals = np.asarray(VALUE_FNS[name](jnp.asarray(xs.reshape((-1,) + shape)))).reshape(m, 2 * n)
    return ((vals[:, :n] - vals[:, n:]) / (2 * h)).reshape(points.shape)


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


@pytest.mark.parametrize("name", list(SCALAR_FNS))
def test_gradients_match_finite_differences_float64(x64, name):
    points = _grad_points()[name]
    grads = np.asarray(GRAD_FNS[name](jnp.asarray(points, jnp.float64)))
    assert grads.dtype == np.float64
    assert np.all(np.isfinite(grads))
    fd = _central_fd(name, points, h=1e-6)
    for x, gr, fdx in zip(points, grads, fd, strict=True):
        np.testing.assert_allclose(gr, fdx, rtol=1e-6, atol=1e-7, err_msg=f"{name} at {x.ravel()}")


@pytest.mark.parametrize("name", list(SCALAR_FNS))
def test_gradients_float32_finite_at_zero_and_match_float64(name):
    points = _grad_points()[name]
    g32 = np.asarray(GRAD_FNS[name](f32(points)))
    assert g32.dtype == np.float32 and np.all(np.isfinite(g32))  # index 0 is the exactly-zero input
    with jax.enable_x64(True):
        g64 = np.asarray(GRAD_FNS[name](jnp.asarray(points, jnp.float64)))
    np.testing.assert_allclose(g32, g64, rtol=1e-3, atol=1e-3 * np.abs(g64).max())
    if name == "quat_to_rotmat":  # the degenerate all-zero quaternion as well
        assert np.all(np.isfinite(np.asarray(GRAD_FNS[name](jnp.zeros_like(f32(points))))))


def test_log_exp_jacobian_is_identity():
    """On the manifold, d log(exp(x)) / dx = I for rotation angles < pi, including next to 0 and pi."""
    axis = np.array([0.0, 0.6, 0.8])
    angles = np.array([0.0, 1e-5, 1.5, PI - 0.01])
    w = axis * angles[:, None]
    xi = f32(np.concatenate([w, np.broadcast_to([0.2, -0.4, 1.0], (4, 3))], -1))
    J6 = jit(jax.vmap(jax.jacfwd(lambda x: g.se3_log(g.se3_exp(x)))))(xi)
    np.testing.assert_allclose(J6, np.broadcast_to(np.eye(6), J6.shape), atol=5e-4)


# ---------------------------------------------------------------------------------------------------------
# Property-based.
# ---------------------------------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(hnp.arrays(np.float64, (len(ANGLES), 7), elements=st.floats(-1.0, 1.0)))
def test_property_se3_exp_log_round_trip(raw):
    """Batches of random twists with rotation angle in [0, pi - 1e-3] and |v_i| <= 5 round trip."""
    axis = raw[:, :3]
    norm = np.linalg.norm(axis, axis=-1, keepdims=True)
    axis = np.where(norm > 0.1, axis / np.maximum(norm, 1e-12), np.array([1.0, 0.0, 0.0]))
    angle = (raw[:, 3:4] + 1.0) / 2.0 * (PI - 1e-3)
    xi = np.concatenate([axis * angle, 5.0 * raw[:, 4:]], axis=-1)
    T = se3_exp(f32(xi))
    assert_rotation(np.asarray(T)[:, :3, :3])
    xi_back = np.asarray(se3_log(T), np.float64)
    np.testing.assert_allclose(xi_back, np.asarray(f32(xi)), atol=1e-4)
