"""Rotation and rigid-motion utilities (quaternions, 6D rotations, SO(3), SE(3)) in pure ``jax.numpy``.

Conventions used throughout this module:

* Quaternions are ``(w, x, y, z)``: scalar first, Hamilton product, and they act as *active* rotations,
  ``R(q) p = q p q^*``.  ``q`` and ``-q`` describe the same rotation; functions that return quaternions
  pick the representative with ``w >= 0``.
* Rotation matrices ``R`` are ``(..., 3, 3)`` and act on column vectors: ``p' = R @ p``.
* Twists are ``xi = (omega, v)``: rotation part first, translation part second, shape ``(..., 6)``.
* Homogeneous transforms are ``(..., 4, 4)`` matrices ``[[R, t], [0, 0, 0, 1]]``.
* The 6D rotation representation (Zhou et al., CVPR 2019) is the first two *columns* of ``R``,
  concatenated: ``d6 = (R[:, 0], R[:, 1])``.

Every function is batched over arbitrary leading dimensions ``...``, preserves the floating dtype of its
input (float32 is the intended dtype; float64 works when x64 is enabled) and is safe under ``jax.jit``,
``jax.vmap`` and ``jax.grad``: values *and* gradients are finite at the singular points (zero angle, zero
vectors, angle pi).  Removable singularities are handled by small private helpers that switch to a Taylor
series with the "double ``jnp.where``" trick, so that the branch not taken never sees an input that would
produce ``inf``/``NaN`` (which would otherwise leak into gradients as ``0 * inf = NaN``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax.numpy as jnp

__all__ = [
    "quat_normalize",
    "quat_conjugate",
    "quat_multiply",
    "quat_to_rotmat",
    "rotmat_to_quat",
    "rot6d_to_rotmat",
    "rotmat_to_rot6d",
    "hat",
    "vee",
    "so3_exp",
    "so3_log",
    "so3_exp_quat",
    "se3_exp",
    "se3_log",
    "se3_apply",
    "se3_inverse",
]

Array = jnp.ndarray

# ---------------------------------------------------------------------------------------------------------
# Private numerical helpers.
# ---------------------------------------------------------------------------------------------------------

# Below this squared angle the coefficient functions use their Taylor series.  The series below are carried
# far enough (relative truncation error < 1e-13 at theta^2 = 1) to be accurate in float64 as well, while the
# closed forms only suffer from cancellation at ~eps / theta^2 <= eps for theta^2 >= 1.
_TAYLOR_T2 = 1.0


def _horner(x: Array, coeffs: Sequence[float]) -> Array:
    """Evaluates ``sum_k coeffs[k] * x**k`` by Horner's rule (keeps the dtype of ``x``)."""
    acc = jnp.zeros_like(x) + coeffs[-1]
    for c in reversed(coeffs[:-1]):
        acc = acc * x + c
    return acc


def _taylor_switch(
    t2: Array,
    taylor_coeffs: Sequence[float],
    exact: Callable[[Array], Array],
    threshold: float = _TAYLOR_T2,
) -> Array:
    """Evaluates ``f(t2)`` with a Taylor series in ``t2`` below ``threshold`` and ``exact(t2)`` above.

    Double-``where`` trick: each branch only ever receives inputs inside its own domain of validity (the
    exact branch sees ``t2 >= threshold``, the series branch sees ``t2 < threshold``), so neither branch can
    produce ``inf``/``NaN`` values or gradients that would be multiplied by zero and turn into ``NaN``.
    """
    small = t2 < threshold
    t2_exact = jnp.where(small, jnp.full_like(t2, 2.0 * threshold), t2)
    t2_taylor = jnp.where(small, t2, jnp.zeros_like(t2))
    return jnp.where(small, _horner(t2_taylor, taylor_coeffs), exact(t2_exact))


# Taylor coefficients in powers of theta^2.
_SINC_COEFFS = [(-1.0) ** k / math.factorial(2 * k + 1) for k in range(8)]  # sin(t) / t
_COS_COEFFS = [(-1.0) ** k / math.factorial(2 * k + 2) for k in range(8)]  # (1 - cos t) / t^2
_SIN3_COEFFS = [(-1.0) ** k / math.factorial(2 * k + 3) for k in range(8)]  # (t - sin t) / t^3
# t / sin(t) = 1 + t^2/6 + 7 t^4/360 + 31 t^6/15120 + 127 t^8/604800 + 73 t^10/3421440 + ...
_T_OVER_SIN_COEFFS = [1.0, 1.0 / 6.0, 7.0 / 360.0, 31.0 / 15120.0, 127.0 / 604800.0, 73.0 / 3421440.0]
# (1 - (t/2) cot(t/2)) / t^2 = 1/12 + t^2/720 + t^4/30240 + t^6/1209600 + t^8/47900160 + ...
_VINV_COEFFS = [1.0 / 12.0, 1.0 / 720.0, 1.0 / 30240.0, 1.0 / 1209600.0, 1.0 / 47900160.0]


def _sinc_sq(t2: Array) -> Array:
    """``sin(t) / t`` as a function of ``t2 = t^2`` (value 1 at 0)."""

    def exact(x):
        t = jnp.sqrt(x)
        return jnp.sin(t) / t

    return _taylor_switch(t2, _SINC_COEFFS, exact)


def _one_minus_cos_sq(t2: Array) -> Array:
    """``(1 - cos t) / t^2`` as a function of ``t2 = t^2`` (value 1/2 at 0)."""

    def exact(x):
        half = 0.5 * jnp.sqrt(x)
        s = jnp.sin(half) / half  # 1 - cos t = 2 sin^2(t/2): no cancellation.
        return 0.5 * s * s

    return _taylor_switch(t2, _COS_COEFFS, exact)


def _t_minus_sin_cube(t2: Array) -> Array:
    """``(t - sin t) / t^3`` as a function of ``t2 = t^2`` (value 1/6 at 0)."""

    def exact(x):
        t = jnp.sqrt(x)
        return (t - jnp.sin(t)) / (x * t)

    return _taylor_switch(t2, _SIN3_COEFFS, exact)


def _t_over_sin(t2: Array) -> Array:
    """``t / sin(t)`` as a function of ``t2 = t^2`` for ``0 <= t < pi`` (value 1 at 0).

    No cancellation in the closed form, so a small threshold suffices; the series is only there for the
    removable ``0 / 0`` at ``t = 0`` and for accurate derivatives next to it.
    """

    def exact(x):
        t = jnp.sqrt(x)
        return t / jnp.sin(t)

    return _taylor_switch(t2, _T_OVER_SIN_COEFFS, exact, threshold=1e-2)


def _vinv_coeff(t2: Array) -> Array:
    """``(1 - (t/2) cot(t/2)) / t^2`` as a function of ``t2 = t^2`` for ``0 <= t <= pi`` (1/12 at 0).

    This is the ``W^2`` coefficient of the inverse left Jacobian of SO(3),
    ``V^{-1} = I - W/2 + c W^2`` (note ``(t/2) cot(t/2) = t sin t / (2 (1 - cos t))``).
    """

    def exact(x):
        half = 0.5 * jnp.sqrt(x)
        return (1.0 - half * jnp.cos(half) / jnp.sin(half)) / x

    return _taylor_switch(t2, _VINV_COEFFS, exact)


def _safe_norm(x: Array, axis: int = -1, keepdims: bool = False) -> Array:
    """Euclidean norm whose value *and* gradient are finite at ``x = 0`` (gradient 0 there)."""
    sq = jnp.sum(x * x, axis=axis, keepdims=keepdims)
    tiny = jnp.finfo(sq.dtype).tiny
    is_zero = sq <= tiny
    safe_sq = jnp.where(is_zero, jnp.ones_like(sq), sq)
    return jnp.where(is_zero, jnp.zeros_like(sq), jnp.sqrt(safe_sq))


def _safe_normalize(x: Array, eps: float) -> Array:
    """``x / max(|x|, eps)`` along the last axis; finite values and gradients everywhere."""
    return x / jnp.maximum(_safe_norm(x, keepdims=True), eps)


def _eye_like(x: Array, n: int) -> Array:
    return jnp.eye(n, dtype=x.dtype)


def _matvec(m: Array, v: Array) -> Array:
    """``m @ v`` for ``m: (..., n, k)``, ``v: (..., k)`` with broadcasting of the leading dims."""
    return jnp.matmul(m, v[..., None])[..., 0]


# ---------------------------------------------------------------------------------------------------------
# Quaternions.
# ---------------------------------------------------------------------------------------------------------


def quat_normalize(q: Array, eps: float = 1e-8) -> Array:
    """Normalises quaternions to unit length.

    Args:
      q: ``(..., 4)`` float, ``(w, x, y, z)``, need not be normalised.
      eps: lower bound on the norm used in the division; ``q = 0`` maps to ``0`` with finite gradients.

    Returns:
      ``(..., 4)`` unit quaternions ``q / max(|q|, eps)`` (sign is *not* canonicalised).
    """
    return _safe_normalize(q, eps)


def quat_conjugate(q: Array) -> Array:
    """Quaternion conjugate ``(w, -x, -y, -z)``; the inverse rotation for unit quaternions.

    Args:
      q: ``(..., 4)`` float, ``(w, x, y, z)``.

    Returns:
      ``(..., 4)`` conjugate quaternion.
    """
    return q * jnp.asarray([1.0, -1.0, -1.0, -1.0], dtype=q.dtype)


def quat_multiply(q1: Array, q2: Array) -> Array:
    """Hamilton product ``q1 * q2`` (apply ``q2`` first, then ``q1``).

    Satisfies ``quat_to_rotmat(quat_multiply(q1, q2)) == quat_to_rotmat(q1) @ quat_to_rotmat(q2)``.

    Args:
      q1: ``(..., 4)`` float, ``(w, x, y, z)``.
      q2: ``(..., 4)`` float, ``(w, x, y, z)``; leading dims broadcast against ``q1``.

    Returns:
      ``(..., 4)`` product quaternion (not renormalised).
    """
    w1, v1 = q1[..., :1], q1[..., 1:]
    w2, v2 = q2[..., :1], q2[..., 1:]
    w = w1 * w2 - jnp.sum(v1 * v2, axis=-1, keepdims=True)
    v = w1 * v2 + w2 * v1 + jnp.cross(v1, v2)
    return jnp.concatenate([w, v], axis=-1)


def quat_to_rotmat(q: Array, eps: float = 1e-8) -> Array:
    """Converts quaternions to rotation matrices (normalises first).

    Args:
      q: ``(..., 4)`` float, ``(w, x, y, z)``, need not be normalised (``q = 0`` gives the identity).
      eps: passed to :func:`quat_normalize`.

    Returns:
      ``(..., 3, 3)`` rotation matrix ``R`` with ``R p = q p q^*`` (active rotation of column vectors).
    """
    q = quat_normalize(q, eps)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    xx, yy, zz = x * x, y * y, z * z
    xy, xz, yz = x * y, x * z, y * z
    wx, wy, wz = w * x, w * y, w * z
    rows = [
        [1.0 - 2.0 * (yy + zz), 2.0 * (xy - wz), 2.0 * (xz + wy)],
        [2.0 * (xy + wz), 1.0 - 2.0 * (xx + zz), 2.0 * (yz - wx)],
        [2.0 * (xz - wy), 2.0 * (yz + wx), 1.0 - 2.0 * (xx + yy)],
    ]
    return jnp.stack([jnp.stack(r, axis=-1) for r in rows], axis=-2)


def rotmat_to_quat(R: Array) -> Array:
    """Converts rotation matrices to unit quaternions with Shepperd's method.

    The component of largest magnitude among ``(w, x, y, z)`` (selected from ``trace(R)`` and the diagonal
    of ``R``) is recovered from the diagonal by a square root and the other three from off-diagonal sums /
    differences divided by it, which is numerically stable for every rotation.

    Args:
      R: ``(..., 3, 3)`` float rotation matrix (acting on column vectors).

    Returns:
      ``(..., 4)`` unit quaternion ``(w, x, y, z)`` with the canonical sign ``w >= 0`` (for ``w == 0``,
      i.e. rotations by exactly pi, either sign may be returned).
    """
    r00, r01, r02 = R[..., 0, 0], R[..., 0, 1], R[..., 0, 2]
    r10, r11, r12 = R[..., 1, 0], R[..., 1, 1], R[..., 1, 2]
    r20, r21, r22 = R[..., 2, 0], R[..., 2, 1], R[..., 2, 2]
    # 4 * (w^2, x^2, y^2, z^2).
    four_sq = jnp.stack(
        [
            1.0 + r00 + r11 + r22,
            1.0 + r00 - r11 - r22,
            1.0 - r00 + r11 - r22,
            1.0 - r00 - r11 + r22,
        ],
        axis=-1,
    )
    # For a rotation the largest of these is >= 1; the clamp only keeps the branches that are *not* selected
    # finite (values and gradients), it never touches the selected one for valid rotations.
    s = 2.0 * jnp.sqrt(jnp.maximum(four_sq, 1e-6))  # 4 * |component|
    sw, sx, sy, sz = s[..., 0], s[..., 1], s[..., 2], s[..., 3]
    # Each candidate is (w, x, y, z) computed assuming that component is the largest.
    candidates = jnp.stack(
        [
            jnp.stack([0.25 * sw, (r21 - r12) / sw, (r02 - r20) / sw, (r10 - r01) / sw], axis=-1),
            jnp.stack([(r21 - r12) / sx, 0.25 * sx, (r01 + r10) / sx, (r02 + r20) / sx], axis=-1),
            jnp.stack([(r02 - r20) / sy, (r01 + r10) / sy, 0.25 * sy, (r12 + r21) / sy], axis=-1),
            jnp.stack([(r10 - r01) / sz, (r02 + r20) / sz, (r12 + r21) / sz, 0.25 * sz], axis=-1),
        ],
        axis=-2,
    )  # (..., 4 candidates, 4 components)
    best = jnp.argmax(four_sq, axis=-1)[..., None, None]
    q = jnp.take_along_axis(candidates, best, axis=-2)[..., 0, :]
    q = quat_normalize(q)
    return jnp.where(q[..., :1] < 0, -q, q)


# ---------------------------------------------------------------------------------------------------------
# 6D rotation representation.
# ---------------------------------------------------------------------------------------------------------


def rot6d_to_rotmat(d6: Array, eps: float = 1e-8) -> Array:
    """Maps the 6D representation of Zhou et al. (2019) to a rotation matrix by Gram-Schmidt.

    ``a1 = d6[..., :3]`` and ``a2 = d6[..., 3:]`` are taken as the first two *columns* of ``R``:
    ``b1 = a1 / |a1|``, ``b2 = normalise(a2 - (b1 . a2) b1)``, ``b3 = b1 x b2``, ``R = [b1 | b2 | b3]``.

    Args:
      d6: ``(..., 6)`` float, need not be orthonormal (``a1``, ``a2`` must not be (near-)parallel or zero
        for a meaningful result; the output stays finite regardless).
      eps: lower bound on the norms used in the normalisations.

    Returns:
      ``(..., 3, 3)`` rotation matrix (orthonormal, det +1) whose first two columns span ``a1``, ``a2``.
    """
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = _safe_normalize(a1, eps)
    b2 = _safe_normalize(a2 - jnp.sum(b1 * a2, axis=-1, keepdims=True) * b1, eps)
    b3 = jnp.cross(b1, b2)
    return jnp.stack([b1, b2, b3], axis=-1)


def rotmat_to_rot6d(R: Array) -> Array:
    """Inverse of :func:`rot6d_to_rotmat`: the first two *columns* of ``R``, concatenated.

    Args:
      R: ``(..., 3, 3)`` float rotation matrix.

    Returns:
      ``(..., 6)`` ``(R[..., :, 0], R[..., :, 1])``.
    """
    return jnp.concatenate([R[..., :, 0], R[..., :, 1]], axis=-1)


# ---------------------------------------------------------------------------------------------------------
# SO(3).
# ---------------------------------------------------------------------------------------------------------


def hat(w: Array) -> Array:
    """Skew-symmetric (cross-product) matrix: ``hat(w) @ p == cross(w, p)``.

    Args:
      w: ``(..., 3)`` float vector.

    Returns:
      ``(..., 3, 3)`` ``[[0, -w3, w2], [w3, 0, -w1], [-w2, w1, 0]]``.
    """
    x, y, z = w[..., 0], w[..., 1], w[..., 2]
    o = jnp.zeros_like(x)
    rows = [[o, -z, y], [z, o, -x], [-y, x, o]]
    return jnp.stack([jnp.stack(r, axis=-1) for r in rows], axis=-2)


def vee(W: Array) -> Array:
    """Inverse of :func:`hat`: the vector of the skew-symmetric part ``(W - W^T) / 2``.

    Args:
      W: ``(..., 3, 3)`` float matrix (exactly ``hat(w)`` gives back ``w``).

    Returns:
      ``(..., 3)`` ``0.5 * (W[2,1] - W[1,2], W[0,2] - W[2,0], W[1,0] - W[0,1])``.
    """
    return 0.5 * jnp.stack(
        [W[..., 2, 1] - W[..., 1, 2], W[..., 0, 2] - W[..., 2, 0], W[..., 1, 0] - W[..., 0, 1]], axis=-1
    )


def so3_exp(w: Array) -> Array:
    """Exponential map of SO(3) (Rodrigues' formula).

    ``R = I + (sin t / t) W + ((1 - cos t) / t^2) W^2`` with ``W = hat(w)``, ``t = |w|``; both coefficients
    are evaluated by Taylor series for small ``t`` so that values and gradients are exact at ``w = 0``.

    Args:
      w: ``(..., 3)`` float axis-angle vector (rotation by ``|w|`` radians about ``w / |w|``,
        counter-clockwise / right-handed).

    Returns:
      ``(..., 3, 3)`` rotation matrix.
    """
    t2 = jnp.sum(w * w, axis=-1)[..., None, None]
    W = hat(w)
    return _eye_like(w, 3) + _sinc_sq(t2) * W + _one_minus_cos_sq(t2) * (W @ W)


def so3_exp_quat(w: Array) -> Array:
    """Exponential map of SO(3) as a unit quaternion: ``(cos(t/2), sin(t/2) w / t)``, ``t = |w|``.

    Same rotation as ``so3_exp(w)`` without building a matrix; values and gradients exact at ``w = 0``.

    Args:
      w: ``(..., 3)`` axis-angle vector.

    Returns:
      ``(..., 4)`` quaternion ``(w, x, y, z)`` (``w >= 0`` for ``|w| <= pi``).
    """
    t2 = jnp.sum(w * w, axis=-1, keepdims=True)
    h2 = 0.25 * t2  # (t/2)^2
    cos_half = 1.0 - h2 * _one_minus_cos_sq(h2)
    sin_half_over_t = 0.5 * _sinc_sq(h2)
    return jnp.concatenate([cos_half, sin_half_over_t * w], axis=-1)


# Below this cosine of the angle (t > pi/2), so3_log recovers the axis from the symmetric part of R.
_LOG_PI_BRANCH_COS = 0.0


def so3_log(R: Array) -> Array:
    """Logarithm map of SO(3): the axis-angle vector ``w`` with ``so3_exp(w) == R`` and ``|w| <= pi``.

    The angle is ``t = atan2(|v|, (tr R - 1) / 2)`` with ``v = vee(R)`` (``|v| = sin t``), which is accurate
    over the whole range ``[0, pi]`` (unlike ``arccos``).  For ``t <= pi/2`` the result is
    ``(t / sin t) v`` with a Taylor series of ``t / sin t`` near 0.  For ``t > pi/2`` the axis ``a`` is read
    from the symmetric part instead, ``(R + R^T)/2 - cos t I = (1 - cos t) a a^T`` (the column with the
    largest diagonal entry), with its sign taken from ``v``; this stays accurate at and next to ``t = pi``.

    Args:
      R: ``(..., 3, 3)`` float rotation matrix.

    Returns:
      ``(..., 3)`` axis-angle vector.  At exactly ``t = pi`` the sign of the axis is arbitrary (both are
      valid logarithms); the map is discontinuous there, so gradients at exactly ``pi`` are not meaningful
      (they are finite).
    """
    v = vee(R)
    s = _safe_norm(v)  # sin(t) >= 0
    c = 0.5 * (jnp.trace(R, axis1=-2, axis2=-1) - 1.0)  # cos(t)
    theta = jnp.arctan2(s, c)
    near_pi = c < _LOG_PI_BRANCH_COS

    # Regular branch (t <= pi/2): w = t / sin(t) * v.  Double where: never evaluate t/sin(t) near pi.
    theta_reg = jnp.where(near_pi, jnp.zeros_like(theta), theta)
    w_reg = _t_over_sin(theta_reg * theta_reg)[..., None] * v

    # Near-pi branch (t > pi/2): axis from the symmetric part.  Double where: 1 - c >= 1 in this branch.
    c_pi = jnp.where(near_pi, c, -jnp.ones_like(c))
    sym = 0.5 * (R + jnp.swapaxes(R, -1, -2))
    aat = (sym - c_pi[..., None, None] * _eye_like(R, 3)) / (1.0 - c_pi)[..., None, None]  # = a a^T
    diag = jnp.diagonal(aat, axis1=-2, axis2=-1)
    j = jnp.argmax(diag, axis=-1)[..., None, None]
    col = jnp.take_along_axis(aat, j, axis=-1)[..., 0]  # = a * a_j
    ajj = jnp.take_along_axis(diag, j[..., 0], axis=-1)  # = a_j^2 >= 1/3 for rotations
    axis = col / jnp.sqrt(jnp.maximum(ajj, 1e-12))
    sign = jnp.where(jnp.sum(axis * v, axis=-1, keepdims=True) < 0, -1.0, 1.0).astype(R.dtype)
    w_pi = (sign * theta[..., None]) * axis

    return jnp.where(near_pi[..., None], w_pi, w_reg)


# ---------------------------------------------------------------------------------------------------------
# SE(3).
# ---------------------------------------------------------------------------------------------------------


def _make_transform(R: Array, t: Array) -> Array:
    """Assembles ``(..., 4, 4)`` ``[[R, t], [0, 0, 0, 1]]`` from ``R: (..., 3, 3)`` and ``t: (..., 3)``."""
    top = jnp.concatenate([R, t[..., None]], axis=-1)
    bottom = jnp.broadcast_to(jnp.asarray([0.0, 0.0, 0.0, 1.0], dtype=R.dtype), top.shape[:-2] + (1, 4))
    return jnp.concatenate([top, bottom], axis=-2)


def se3_exp(xi: Array) -> Array:
    """Exponential map of SE(3).

    ``T = [[R, V v], [0, 1]]`` with ``R = so3_exp(omega)`` and the left Jacobian
    ``V = I + ((1 - cos t) / t^2) W + ((t - sin t) / t^3) W^2`` (``W = hat(omega)``, ``t = |omega|``;
    Taylor series for small ``t``).

    Args:
      xi: ``(..., 6)`` float twist ``(omega, v)``: rotation (axis-angle) first, translation part second.

    Returns:
      ``(..., 4, 4)`` homogeneous transform.
    """
    w, v = xi[..., :3], xi[..., 3:]
    t2 = jnp.sum(w * w, axis=-1)[..., None, None]
    W = hat(w)
    W2 = W @ W
    eye = _eye_like(xi, 3)
    b = _one_minus_cos_sq(t2)
    R = eye + _sinc_sq(t2) * W + b * W2
    V = eye + b * W + _t_minus_sin_cube(t2) * W2
    return _make_transform(R, _matvec(V, v))


def se3_log(T: Array) -> Array:
    """Logarithm map of SE(3): the twist ``xi = (omega, v)`` with ``se3_exp(xi) == T``, ``|omega| <= pi``.

    ``omega = so3_log(R)`` and ``v = V^{-1} t`` with
    ``V^{-1} = I - W/2 + ((1 - (t/2) cot(t/2)) / t^2) W^2`` (Taylor series for small ``t = |omega|``).

    Args:
      T: ``(..., 4, 4)`` float homogeneous transform ``[[R, t], [0, 1]]`` (the last row is ignored).

    Returns:
      ``(..., 6)`` twist ``(omega, v)``.
    """
    R, t = T[..., :3, :3], T[..., :3, 3]
    w = so3_log(R)
    t2 = jnp.sum(w * w, axis=-1)[..., None, None]
    W = hat(w)
    v_inv = _eye_like(T, 3) - 0.5 * W + _vinv_coeff(t2) * (W @ W)
    return jnp.concatenate([w, _matvec(v_inv, t)], axis=-1)


def se3_apply(T: Array, points: Array) -> Array:
    """Applies rigid transforms to 3D points: ``R p + t``.

    Args:
      T: ``(..., 4, 4)`` float homogeneous transform ``[[R, t], [0, 1]]`` (the last row is ignored).
      points: ``(..., 3)`` float points; leading dims broadcast against those of ``T`` (e.g. ``T: (4, 4)``
        with ``points: (N, 3)``, or ``T: (B, 1, 4, 4)`` with ``points: (B, N, 3)``).

    Returns:
      ``(..., 3)`` transformed points.
    """
    return _matvec(T[..., :3, :3], points) + T[..., :3, 3]


def se3_inverse(T: Array) -> Array:
    """Inverse of rigid transforms: ``[[R^T, -R^T t], [0, 1]]`` (assumes ``R`` is a rotation).

    Args:
      T: ``(..., 4, 4)`` float homogeneous transform.

    Returns:
      ``(..., 4, 4)`` inverse transform.
    """
    Rt = jnp.swapaxes(T[..., :3, :3], -1, -2)
    return _make_transform(Rt, -_matvec(Rt, T[..., :3, 3]))
