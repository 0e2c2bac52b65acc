"""Real spherical harmonics up to degree 3, as used by 3D Gaussian splatting.

Coefficients are stored (N, K, 3) with K = (degree + 1)^2 in the usual 3DGS order; colour = SH . basis(dir)
+ 0.5, clamped at 0 (so that zero coefficients give mid grey and a DC-only fit matches 3DGS' convention).
"""

from __future__ import annotations

import jax.numpy as jnp

C0 = 0.28209479177387814
C1 = 0.4886025119029199
C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)


def num_sh_bases(degree: int) -> int:
    return (degree + 1) ** 2


def sh_degree_from_bases(k: int) -> int:
    degree = int(round(k**0.5)) - 1
    if num_sh_bases(degree) != k or not 0 <= degree <= 3:
        raise ValueError(f"colors: SH coefficient count {k} is not (d+1)^2 for a degree d in 0..3")
    return degree


def sh_basis(dirs: jnp.ndarray, degree: int) -> jnp.ndarray:
    """Real SH basis values. dirs: (..., 3) unit vectors -> (..., (degree+1)^2)."""
    x, y, z = dirs[..., 0], dirs[..., 1], dirs[..., 2]
    out = [jnp.full_like(x, C0)]
    if degree >= 1:
        out += [-C1 * y, C1 * z, -C1 * x]
    if degree >= 2:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        out += [
            C2[0] * xy,
            C2[1] * yz,
            C2[2] * (2.0 * zz - xx - yy),
            C2[3] * xz,
            C2[4] * (xx - yy),
        ]
    if degree >= 3:
        out += [
            C3[0] * y * (3.0 * xx - yy),
            C3[1] * xy * z,
            C3[2] * y * (4.0 * zz - xx - yy),
            C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy),
            C3[4] * x * (4.0 * zz - xx - yy),
            C3[5] * z * (xx - yy),
            C3[6] * x * (xx - 3.0 * yy),
        ]
    return jnp.stack(out, axis=-1)


def eval_sh(coeffs: jnp.ndarray, dirs: jnp.ndarray, degree: int | None = None) -> jnp.ndarray:
    """View-dependent colour. coeffs: (N, K, 3); dirs: (N, 3) (normalised here) -> (N, 3) >= 0.

    `degree` may be lower than the stored one (progressive SH training); higher bands are then ignored.
    """
    stored = sh_degree_from_bases(coeffs.shape[-2])
    degree = stored if degree is None else min(int(degree), stored)
    norm = jnp.sqrt(jnp.maximum(jnp.sum(dirs * dirs, axis=-1, keepdims=True), 1e-20))
    basis = sh_basis(dirs / norm, degree)  # (N, k)
    k = basis.shape[-1]
    rgb = jnp.einsum("nk,nkc->nc", basis, coeffs[:, :k, :])
    return jnp.maximum(rgb + 0.5, 0.0)


def rgb_to_sh_dc(rgb: jnp.ndarray) -> jnp.ndarray:
    """DC coefficient (..., 3) that evaluates to `rgb` (inverse of the degree-0 colour map)."""
    return (rgb - 0.5) / C0
