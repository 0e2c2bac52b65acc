/*
 * motion.js -- the per-Gaussian work of a frame, on the CPU: motion at time t, 3D covariance, SH colour and
 * the depth sort. Used by worker.js (interactive viewing) and directly by viewer.js (capture mode).
 *
 * Why here and not in the vertex shader: the depth sort needs every moved centre on the CPU anyway, so the
 * motion is evaluated once, in double precision (JS numbers), instead of twice (CPU for the sort and GPU for
 * drawing) with two precisions that could disagree. Running it in a worker keeps the page responsive; the
 * vertex shader then only does what depends on the current camera every frame (the EWA projection).
 *
 * The maths follows docs/format.md "Evaluating a Gaussian at time t" and any4d_jax/model/motion.py, and the
 * colour any4d_jax/render/sh.py.
 *
 *   const ev = new A4DMotion.FrameBuilder(scene);           // scene from A4D.parse
 *   const {data, count} = ev.build(t, viewmat, near, far);   // viewmat: 16 numbers, row-major world-to-camera
 *
 * `data` holds `count` splats of A4DMotion.STRIDE floats, sorted back to front (farthest first):
 *   [mean x, y, z, opacity, cov xx, xy, xz, yy, yz, zz, r, g, b]   (world covariance, SH colour >= 0)
 * Gaussians whose centre lies outside (near, far) in depth, or whose opacity is below 1/255, are left out
 * (the renderer culls them too).
 */
(function (root) {
  'use strict';

  const STRIDE = 13;
  const ALPHA_MIN = 1 / 255;

  // Real SH constants of any4d_jax/render/sh.py (3DGS order).
  const C0 = 0.28209479177387814;
  const C1 = 0.4886025119029199;
  const C2 = [1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792,
    0.5462742152960396];
  const C3 = [-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
    -0.4570457994644658, 1.445305721320277, -0.5900435899266435];

  /** phi(t) of the time basis (K_t values). */
  function phi(scene, t) {
    const k = scene.numTimeCoeffs;
    const T = scene.numFrames;
    const out = new Float64Array(k);
    if (scene.timeBasis === 'per_frame') {
      const tc = Math.min(Math.max(t, 0), T - 1);
      for (let j = 0; j < k; j++) out[j] = Math.max(0, 1 - Math.abs(tc - j));
    } else if (scene.timeBasis === 'bspline') {
      // Uniform cubic B-splines (model/motion.py bspline_basis): control point j centred at (j - 1) h.
      const h = Math.max(T - 1, 1) / (k - 3);
      const tc = Math.min(Math.max(t, 0), Math.max(T - 1, 0));
      for (let j = 0; j < k; j++) {
        const x = Math.abs(tc / h - (j - 1));
        out[j] = x < 1 ? 2 / 3 - x * x + 0.5 * x * x * x : x < 2 ? (2 - x) ** 3 / 6 : 0;
      }
    } else {
      for (let j = 0; j < k; j++) out[j] = Math.cos((Math.PI * (j + 1) * (t + 0.5)) / T);
    }
    return out;
  }

  /** psi(t) = phi(t) - phi(t0), exactly 0 at the canonical frame. */
  function timeBasis(scene, t) {
    const p = phi(scene, t);
    if (t === scene.canonicalFrame) return p.fill(0);
    const p0 = phi(scene, scene.canonicalFrame);
    for (let j = 0; j < p.length; j++) p[j] -= p0[j];
    return p;
  }

  /**
   * World twists of all B = 6 C + B_l bases at time t: Float64Array (B * 6), each (omega, v).
   * A twist read about pivot p is the world twist (omega, v + p x omega).
   */
  function basisTwists(scene, t) {
    const psi = timeBasis(scene, t);
    const C = scene.numGeneratorChannels;
    const BL = scene.numLearnable;
    const gen = scene.arrays.generator; // (K_t, C, 6)
    const lrn = scene.arrays.learnable; // (K_t, B_l, 6)
    const gp = scene.arrays.generator_pivots;
    const lp = scene.arrays.learnable_pivots;
    const out = new Float64Array((6 * C + BL) * 6);
    const aboutPivot = (b, w, v, px, py, pz) => {
      out.set([w[0], w[1], w[2], v[0] + (py * w[2] - pz * w[1]), v[1] + (pz * w[0] - px * w[2]),
        v[2] + (px * w[1] - py * w[0])], 6 * b);
    };
    for (let c = 0; c < C; c++) {
      for (let k = 0; k < 6; k++) {
        let a = 0; // scalar trajectory a_{c,k}(t)
        for (let j = 0; j < psi.length; j++) a += psi[j] * gen[(j * C + c) * 6 + k];
        const tw = [0, 0, 0, 0, 0, 0];
        tw[k] = a; // a_{c,k}(t) e_k
        aboutPivot(6 * c + k, tw.slice(0, 3), tw.slice(3), gp[3 * c], gp[3 * c + 1], gp[3 * c + 2]);
      }
    }
    for (let b = 0; b < BL; b++) {
      const tw = [0, 0, 0, 0, 0, 0];
      for (let j = 0; j < psi.length; j++) {
        for (let d = 0; d < 6; d++) tw[d] += psi[j] * lrn[(j * BL + b) * 6 + d];
      }
      aboutPivot(6 * C + b, tw.slice(0, 3), tw.slice(3), lp[3 * b], lp[3 * b + 1], lp[3 * b + 2]);
    }
    return out;
  }

  /**
   * SE(3) exponential coefficients for theta^2 = |omega|^2: [sin t / t, (1 - cos t) / t^2, (t - sin t) / t^3],
   * by Taylor series below theta^2 = 1e-4 (where the closed forms lose digits to cancellation).
   */
  function expCoefficients(t2) {
    if (t2 < 1e-4) {
      return [1 - t2 / 6 + (t2 * t2) / 120, 0.5 - t2 / 24 + (t2 * t2) / 720, 1 / 6 - t2 / 120 + (t2 * t2) / 5040];
    }
    const t = Math.sqrt(t2);
    const s = Math.sin(t);
    const h = Math.sin(0.5 * t) / (0.5 * t); // 1 - cos t = 2 sin^2(t / 2): no cancellation
    return [s / t, 0.5 * h * h, (t - s) / (t2 * t)];
  }

  /**
   * Moves every Gaussian to time t: returns {means: Float64Array (N*3), cov: Float64Array (N*6)} with the
   * world covariance R(q_t) diag(s)^2 R(q_t)^T as (xx, xy, xz, yy, yz, zz).
   */
  function moveGaussians(scene, t) {
    const N = scene.numGaussians;
    const B = scene.numBases;
    const X = basisTwists(scene, t);
    const { means, quats, scales, weights } = scene.arrays;
    const outMeans = new Float64Array(N * 3);
    const outCov = new Float64Array(N * 6);
    const xi = new Float64Array(6);
    for (let i = 0; i < N; i++) {
      // 4. blended twist xi_i = sum_b w_ib X_b.
      xi.fill(0);
      for (let b = 0; b < B; b++) {
        const w = weights[i * B + b];
        if (w === 0) continue;
        for (let d = 0; d < 6; d++) xi[d] += w * X[6 * b + d];
      }
      const [wx, wy, wz, vx, vy, vz] = xi;
      const t2 = wx * wx + wy * wy + wz * wz;
      const [A, Bc, Cc] = expCoefficients(t2);
      // 5-6. mean_t = R m + V v with R = I + A W + Bc W^2 and V = I + Bc W + Cc W^2 (W x = omega x x).
      const mx = means[3 * i], my = means[3 * i + 1], mz = means[3 * i + 2];
      const cmx = wy * mz - wz * my, cmy = wz * mx - wx * mz, cmz = wx * my - wy * mx; // omega x m
      const ccmx = wy * cmz - wz * cmy, ccmy = wz * cmx - wx * cmz, ccmz = wx * cmy - wy * cmx;
      const cvx = wy * vz - wz * vy, cvy = wz * vx - wx * vz, cvz = wx * vy - wy * vx; // omega x v
      const ccvx = wy * cvz - wz * cvy, ccvy = wz * cvx - wx * cvz, ccvz = wx * cvy - wy * cvx;
      outMeans[3 * i] = mx + A * cmx + Bc * ccmx + vx + Bc * cvx + Cc * ccvx;
      outMeans[3 * i + 1] = my + A * cmy + Bc * ccmy + vy + Bc * cvy + Cc * ccvy;
      outMeans[3 * i + 2] = mz + A * cmz + Bc * ccmz + vz + Bc * cvz + Cc * ccvz;
      // quat_t = quat(R) * q_i with quat(R) = (cos(t/2), sin(t/2)/t omega); cos(t/2) = 1 - (t/2)^2 Bc(t/2).
      const h2 = 0.25 * t2;
      const [Ah, Bh] = expCoefficients(h2);
      const ew = 1 - h2 * Bh;
      const es = 0.5 * Ah; // sin(t/2) / t
      const ex = es * wx, ey = es * wy, ez = es * wz;
      const qw = quats[4 * i], qx = quats[4 * i + 1], qy = quats[4 * i + 2], qz = quats[4 * i + 3];
      const rw = ew * qw - ex * qx - ey * qy - ez * qz;
      const rx = ew * qx + qw * ex + (ey * qz - ez * qy);
      const ry = ew * qy + qw * ey + (ez * qx - ex * qz);
      const rz = ew * qz + qw * ez + (ex * qy - ey * qx);
      writeCovariance(outCov, i, rw, rx, ry, rz, scales[3 * i], scales[3 * i + 1], scales[3 * i + 2]);
    }
    return { means: outMeans, cov: outCov };
  }

  /** cov[i] = M M^T with M = R(q) diag(s), q normalised here (as geometry.quat_to_rotmat does). */
  function writeCovariance(cov, i, w, x, y, z, sx, sy, sz) {
    const n = Math.max(Math.sqrt(w * w + x * x + y * y + z * z), 1e-8);
    w /= n; x /= n; y /= n; z /= n;
    const r00 = 1 - 2 * (y * y + z * z), r01 = 2 * (x * y - w * z), r02 = 2 * (x * z + w * y);
    const r10 = 2 * (x * y + w * z), r11 = 1 - 2 * (x * x + z * z), r12 = 2 * (y * z - w * x);
    const r20 = 2 * (x * z - w * y), r21 = 2 * (y * z + w * x), r22 = 1 - 2 * (x * x + y * y);
    const m00 = r00 * sx, m01 = r01 * sy, m02 = r02 * sz;
    const m10 = r10 * sx, m11 = r11 * sy, m12 = r12 * sz;
    const m20 = r20 * sx, m21 = r21 * sy, m22 = r22 * sz;
    const o = 6 * i;
    cov[o] = m00 * m00 + m01 * m01 + m02 * m02;
    cov[o + 1] = m00 * m10 + m01 * m11 + m02 * m12;
    cov[o + 2] = m00 * m20 + m01 * m21 + m02 * m22;
    cov[o + 3] = m10 * m10 + m11 * m11 + m12 * m12;
    cov[o + 4] = m10 * m20 + m11 * m21 + m12 * m22;
    cov[o + 5] = m20 * m20 + m21 * m21 + m22 * m22;
  }

  /** SH basis values for a unit direction (x, y, z) up to `degree`, written into out (length (d+1)^2). */
  function shBasis(x, y, z, degree, out) {
    out[0] = C0;
    if (degree < 1) return;
    out[1] = -C1 * y; out[2] = C1 * z; out[3] = -C1 * x;
    if (degree < 2) return;
    const xx = x * x, yy = y * y, zz = z * z, xy = x * y, yz = y * z, xz = x * z;
    out[4] = C2[0] * xy; out[5] = C2[1] * yz; out[6] = C2[2] * (2 * zz - xx - yy);
    out[7] = C2[3] * xz; out[8] = C2[4] * (xx - yy);
    if (degree < 3) return;
    out[9] = C3[0] * y * (3 * xx - yy); out[10] = C3[1] * xy * z; out[11] = C3[2] * y * (4 * zz - xx - yy);
    out[12] = C3[3] * z * (2 * zz - 3 * xx - 3 * yy); out[13] = C3[4] * x * (4 * zz - xx - yy);
    out[14] = C3[5] * z * (xx - yy); out[15] = C3[6] * x * (xx - 3 * yy);
  }

  /**
   * Indices of `keys` (Float32Array of positive depths) in ascending order, stable (ties keep index order),
   * by a two-pass LSD radix sort on the float bits (monotone for positive floats).
   */
  function sortAscending(keys, count) {
    const bits = new Uint32Array(keys.buffer, keys.byteOffset, count);
    let idx = new Uint32Array(count);
    let tmp = new Uint32Array(count);
    for (let i = 0; i < count; i++) idx[i] = i;
    const hist = new Uint32Array(65536);
    for (const shift of [0, 16]) {
      hist.fill(0);
      for (let i = 0; i < count; i++) hist[(bits[i] >>> shift) & 0xffff]++;
      let sum = 0;
      for (let d = 0; d < 65536; d++) {
        const c = hist[d];
        hist[d] = sum;
        sum += c;
      }
      for (let i = 0; i < count; i++) {
        const j = idx[i];
        tmp[hist[(bits[j] >>> shift) & 0xffff]++] = j;
      }
      [idx, tmp] = [tmp, idx];
    }
    return idx;
  }

  /** Builds the sorted splat buffer of a frame; caches the moved Gaussians of the last time asked for. */
  class FrameBuilder {
    constructor(scene) {
      this.scene = scene;
      this.cachedTime = null;
      this.moved = null;
    }

    /** Moved means/covariances at time t (recomputed only when t changes). */
    movedAt(t) {
      if (this.cachedTime !== t) {
        this.moved = moveGaussians(this.scene, t);
        this.cachedTime = t;
      }
      return this.moved;
    }

    /**
     * Splats at time t seen from `viewmat` (16 numbers, row-major world-to-camera, OpenCV), back to front.
     * near, far: depth range of the centres kept (the renderer's RenderConfig defaults).
     */
    build(t, viewmat, near = 0.01, far = 1e10) {
      const s = this.scene;
      const N = s.numGaussians;
      const { means, cov } = this.movedAt(t);
      const { opacities, sh } = s.arrays;
      const V = viewmat;
      // Camera centre -R^T t: SH colours are evaluated along (mean - centre), as api.splat_colors does.
      const ccx = -(V[0] * V[3] + V[4] * V[7] + V[8] * V[11]);
      const ccy = -(V[1] * V[3] + V[5] * V[7] + V[9] * V[11]);
      const ccz = -(V[2] * V[3] + V[6] * V[7] + V[10] * V[11]);

      const keep = new Uint32Array(N);
      const depth = new Float32Array(N);
      let count = 0;
      for (let i = 0; i < N; i++) {
        const z = V[8] * means[3 * i] + V[9] * means[3 * i + 1] + V[10] * means[3 * i + 2] + V[11];
        if (z > near && z < far && opacities[i] >= ALPHA_MIN) {
          keep[count] = i;
          depth[count++] = z;
        }
      }
      const order = sortAscending(depth, count);

      const K = s.shCoeffs;
      const basis = new Float64Array(K);
      const data = new Float32Array(count * STRIDE);
      for (let r = 0; r < count; r++) {
        const i = keep[order[count - 1 - r]]; // back to front: farthest first
        const o = r * STRIDE;
        const mx = means[3 * i], my = means[3 * i + 1], mz = means[3 * i + 2];
        data[o] = mx; data[o + 1] = my; data[o + 2] = mz; data[o + 3] = opacities[i];
        for (let d = 0; d < 6; d++) data[o + 4 + d] = cov[6 * i + d];
        let dx = mx - ccx, dy = my - ccy, dz = mz - ccz;
        const norm = Math.sqrt(Math.max(dx * dx + dy * dy + dz * dz, 1e-20));
        dx /= norm; dy /= norm; dz /= norm;
        shBasis(dx, dy, dz, s.shDegree, basis);
        for (let ch = 0; ch < 3; ch++) {
          let v = 0.5;
          for (let k = 0; k < K; k++) v += basis[k] * sh[(i * K + k) * 3 + ch];
          data[o + 10 + ch] = Math.max(v, 0);
        }
      }
      return { data, count };
    }
  }

  root.A4DMotion = { STRIDE, FrameBuilder, timeBasis, basisTwists, moveGaussians, expCoefficients };
})(typeof self !== 'undefined' ? self : this);
