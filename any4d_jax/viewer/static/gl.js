/*
 * gl.js -- the WebGL2 splat renderer: 3D Gaussian splatting exactly as any4d_jax/render does it.
 *
 *   const r = new A4DRender.SplatRenderer(canvas, {preserveDrawingBuffer});
 *   r.upload(data, count);              // splats from motion.js, sorted back to front
 *   r.setLines(vertices, cameraIds);    // optional line geometry (training-camera frusta)
 *   r.draw({viewmat, fx, fy, cx, cy, skew, width, height, background, lines, activeCamera});
 *
 * Per splat the vertex shader repeats render/project.py: camera-space centre, near/far culling, the Jacobian
 * of the perspective map at the centre (clamped to 1.3x the field of view), 2D covariance J W Sigma W^T J^T +
 * 0.3 I, its inverse (the conic) and the opacity-aware box radius ceil(ext sqrt(Sigma2d_ii)) with
 * ext = min(3.33, sqrt(2 ln(255 o))). The quad covers that box (plus a pixel); the fragment shader evaluates
 * alpha = min(0.99, o exp(-0.5 d^T Sigma^-1 d)) at the pixel centre (integer + 0.5, y down, as OpenCV) and
 * discards alpha < 1/255, as render/composite.py.
 *
 * Compositing: motion.js sorts back to front and the splats are blended with the premultiplied "over"
 * operator (ONE, ONE_MINUS_SRC_ALPHA) onto the background. Unrolled, that is the renderer's front-to-back
 * sum_k alpha_k T_k c_k + T_final background. It runs in a float render target (RGBA32F, or RGBA16F without
 * EXT_float_blend) so that thousands of blends do not accumulate 8-bit rounding, and colours above 1 are only
 * clamped at the end, as the JAX image is. (The renderer's early stop once transmittance would drop to 1e-4
 * cannot be expressed with fixed-function blending; it changes a pixel by at most ~1e-4 of the colour range.)
 *
 * Projection: an OpenCV pinhole (fx, fy, cx, cy, skew, pixel centres at integer + 0.5, y down) is mapped to
 * clip space as x_ndc = 2 u / W - 1, y_ndc = 1 - 2 v / H, so window pixel (i, H - 1 - j) is image pixel
 * (i, j) and gl_FragCoord gives the pixel centre exactly.
 */
(function (root) {
  'use strict';

  const SPLAT_VS = `#version 300 es
precision highp float;
layout(location = 0) in vec2 a_corner;  // quad corner in {-1, 1}^2
layout(location = 1) in vec4 a_mean;    // world centre xyz, opacity
layout(location = 2) in vec3 a_covA;    // world covariance xx, xy, xz
layout(location = 3) in vec3 a_covB;    // world covariance yy, yz, zz
layout(location = 4) in vec3 a_color;   // SH colour (>= 0, not clamped at 1)
uniform mat4 u_viewRows;                // column i = row i of the world-to-camera matrix
uniform vec4 u_intrinsics;              // fx, fy, cx, cy (pixels)
uniform float u_skew;
uniform vec2 u_size;                    // width, height (pixels)
uniform vec2 u_depthRange;              // near, far
flat out vec2 v_center;                 // centre in pixels
flat out vec3 v_conic;                  // inverse 2D covariance (a, b, c)
flat out vec4 v_color;                  // colour, opacity

const float LOWPASS = 0.3;
const float MAX_EXTENT = 3.33;
const float ALPHA_MIN = 1.0 / 255.0;

void cull() { gl_Position = vec4(0.0, 0.0, 2.0, 1.0); }  // outside the clip volume: no fragments

void main() {
  vec4 m = vec4(a_mean.xyz, 1.0);
  vec3 p = vec3(dot(u_viewRows[0], m), dot(u_viewRows[1], m), dot(u_viewRows[2], m));
  float op = a_mean.w;
  if (!(p.z > u_depthRange.x && p.z < u_depthRange.y) || op < ALPHA_MIN) { cull(); return; }
  float fx = u_intrinsics.x, fy = u_intrinsics.y, cx = u_intrinsics.z, cy = u_intrinsics.w, s = u_skew;
  float W = u_size.x, H = u_size.y, z = p.z;
  // Jacobian at the centre, clamped to 1.3x the field of view as project.py does.
  float tanx = 0.5 * W / fx, tany = 0.5 * H / fy;
  float ux = clamp(p.x / z, -(cx / fx + 0.3 * tanx), (W - cx) / fx + 0.3 * tanx);
  float uy = clamp(p.y / z, -(cy / fy + 0.3 * tany), (H - cy) / fy + 0.3 * tany);
  vec3 r0 = u_viewRows[0].xyz, r1 = u_viewRows[1].xyz, r2 = u_viewRows[2].xyz;
  vec3 t0 = (fx / z) * r0 + (s / z) * r1 - ((fx * ux + s * uy) / z) * r2;  // rows of J R, world space
  vec3 t1 = (fy / z) * r1 - (fy * uy / z) * r2;
  mat3 S = mat3(a_covA.x, a_covA.y, a_covA.z, a_covA.y, a_covB.x, a_covB.y, a_covA.z, a_covB.y, a_covB.z);
  vec3 St0 = S * t0, St1 = S * t1;
  float a = dot(t0, St0) + LOWPASS, b = dot(t0, St1), c = dot(t1, St1) + LOWPASS;
  float det = a * c - b * b;
  if (!(det > 1e-12)) { cull(); return; }
  float l = log(255.0 * op);
  if (!(l > 0.0)) { cull(); return; }
  float ext = min(MAX_EXTENT, sqrt(2.0 * l));
  vec2 radius = ceil(ext * sqrt(max(vec2(a, c), 0.0)));
  if (!(radius.x > 0.0 && radius.y > 0.0)) { cull(); return; }
  vec2 center = vec2((fx * p.x + s * p.y) / z + cx, fy * p.y / z + cy);
  v_center = center;
  v_conic = vec3(c / det, -b / det, a / det);
  v_color = vec4(a_color, op);
  vec2 corner = center + a_corner * (radius + 1.0);
  gl_Position = vec4(2.0 * corner.x / W - 1.0, 1.0 - 2.0 * corner.y / H, 0.0, 1.0);
}`;

  const SPLAT_FS = `#version 300 es
precision highp float;
uniform vec2 u_size;
flat in vec2 v_center;
flat in vec3 v_conic;
flat in vec4 v_color;
out vec4 outColor;

void main() {
  vec2 d = v_center - vec2(gl_FragCoord.x, u_size.y - gl_FragCoord.y);  // pixel centre, y down
  float sigma = 0.5 * (v_conic.x * d.x * d.x + v_conic.z * d.y * d.y) + v_conic.y * d.x * d.y;
  float alpha = min(0.99, v_color.a * exp(-sigma));
  if (sigma < 0.0 || alpha < 1.0 / 255.0) discard;
  outColor = vec4(v_color.rgb * alpha, alpha);  // premultiplied
}`;

  const COPY_VS = `#version 300 es
void main() {  // one triangle covering the viewport
  vec2 p = vec2(gl_VertexID == 1 ? 3.0 : -1.0, gl_VertexID == 2 ? 3.0 : -1.0);
  gl_Position = vec4(p, 0.0, 1.0);
}`;

  const COPY_FS = `#version 300 es
precision highp float;
uniform sampler2D u_image;
out vec4 outColor;
void main() {
  outColor = vec4(clamp(texelFetch(u_image, ivec2(gl_FragCoord.xy), 0).rgb, 0.0, 1.0), 1.0);
}`;

  const LINE_VS = `#version 300 es
precision highp float;
layout(location = 0) in vec3 a_pos;     // world point
layout(location = 1) in float a_camera; // training camera index, -1 for the trajectory
uniform mat4 u_viewRows;
uniform vec4 u_intrinsics;
uniform float u_skew;
uniform vec2 u_size;
uniform float u_active;
out vec4 v_color;
void main() {
  vec4 m = vec4(a_pos, 1.0);
  vec3 p = vec3(dot(u_viewRows[0], m), dot(u_viewRows[1], m), dot(u_viewRows[2], m));
  float n = 0.01, f = 1000.0;
  // Same pinhole as the splats, in homogeneous form (w = z) so that lines are clipped at the near plane.
  gl_Position = vec4(2.0 * (u_intrinsics.x * p.x + u_skew * p.y + u_intrinsics.z * p.z) / u_size.x - p.z,
                     p.z - 2.0 * (u_intrinsics.y * p.y + u_intrinsics.w * p.z) / u_size.y,
                     (p.z * (f + n) - 2.0 * f * n) / (f - n), p.z);
  if (a_camera < 0.0) v_color = vec4(0.95, 0.75, 0.2, 0.9);
  else if (abs(a_camera - u_active) < 0.5) v_color = vec4(1.0, 0.3, 0.2, 1.0);
  else v_color = vec4(0.2, 0.45, 0.95, 0.8);
}`;

  const LINE_FS = `#version 300 es
precision highp float;
in vec4 v_color;
out vec4 outColor;
void main() { outColor = vec4(v_color.rgb * v_color.a, v_color.a); }`;

  const STRIDE_BYTES = 13 * 4; // A4DMotion.STRIDE floats

  function compile(gl, type, source) {
    const shader = gl.createShader(type);
    gl.shaderSource(shader, source);
    gl.compileShader(shader);
    if (!gl.getShaderParameter(shader, gl.COMPILE_STATUS)) {
      throw new Error('shader compilation failed: ' + gl.getShaderInfoLog(shader));
    }
    return shader;
  }

  function program(gl, vs, fs) {
    const p = gl.createProgram();
    gl.attachShader(p, compile(gl, gl.VERTEX_SHADER, vs));
    gl.attachShader(p, compile(gl, gl.FRAGMENT_SHADER, fs));
    gl.linkProgram(p);
    if (!gl.getProgramParameter(p, gl.LINK_STATUS)) throw new Error('program link failed: ' + gl.getProgramInfoLog(p));
    const uniforms = {};
    const n = gl.getProgramParameter(p, gl.ACTIVE_UNIFORMS);
    for (let i = 0; i < n; i++) {
      const name = gl.getActiveUniform(p, i).name;
      uniforms[name] = gl.getUniformLocation(p, name);
    }
    return { program: p, uniforms };
  }

  class SplatRenderer {
    constructor(canvas, { preserveDrawingBuffer = false } = {}) {
      const gl = canvas.getContext('webgl2', {
        alpha: false, antialias: false, depth: false, stencil: false, premultipliedAlpha: false,
        preserveDrawingBuffer,
      });
      if (!gl) throw new Error('WebGL2 is not available in this browser');
      this.gl = gl;
      this.canvas = canvas;
      this.floatTarget = !!gl.getExtension('EXT_color_buffer_float');
      this.floatBlend = !!gl.getExtension('EXT_float_blend');
      this.splatProg = program(gl, SPLAT_VS, SPLAT_FS);
      this.copyProg = program(gl, COPY_VS, COPY_FS);
      this.lineProg = program(gl, LINE_VS, LINE_FS);
      this.count = 0;
      this.lineCount = 0;
      this.target = null;
      this.emptyVao = gl.createVertexArray();
      this.initSplatVao();
      this.initLineVao();
    }

    initSplatVao() {
      const gl = this.gl;
      this.splatVao = gl.createVertexArray();
      gl.bindVertexArray(this.splatVao);
      const corners = gl.createBuffer();
      gl.bindBuffer(gl.ARRAY_BUFFER, corners);
      gl.bufferData(gl.ARRAY_BUFFER, new Float32Array([-1, -1, 1, -1, -1, 1, 1, 1]), gl.STATIC_DRAW);
      gl.enableVertexAttribArray(0);
      gl.vertexAttribPointer(0, 2, gl.FLOAT, false, 0, 0);
      this.instanceBuffer = gl.createBuffer();
      gl.bindBuffer(gl.ARRAY_BUFFER, this.instanceBuffer);
      const layout = [[1, 4, 0], [2, 3, 4], [3, 3, 7], [4, 3, 10]]; // location, size, offset in floats
      for (const [loc, size, offset] of layout) {
        gl.enableVertexAttribArray(loc);
        gl.vertexAttribPointer(loc, size, gl.FLOAT, false, STRIDE_BYTES, offset * 4);
        gl.vertexAttribDivisor(loc, 1);
      }
      gl.bindVertexArray(null);
    }

    initLineVao() {
      const gl = this.gl;
      this.lineVao = gl.createVertexArray();
      gl.bindVertexArray(this.lineVao);
      this.lineBuffer = gl.createBuffer();
      gl.bindBuffer(gl.ARRAY_BUFFER, this.lineBuffer);
      gl.enableVertexAttribArray(0);
      gl.vertexAttribPointer(0, 3, gl.FLOAT, false, 16, 0);
      gl.enableVertexAttribArray(1);
      gl.vertexAttribPointer(1, 1, gl.FLOAT, false, 16, 12);
      gl.bindVertexArray(null);
    }

    /** The splats to draw: `count` records of motion.js' layout, back to front. */
    upload(data, count) {
      const gl = this.gl;
      gl.bindBuffer(gl.ARRAY_BUFFER, this.instanceBuffer);
      gl.bufferData(gl.ARRAY_BUFFER, data.subarray(0, count * 13), gl.DYNAMIC_DRAW);
      this.count = count;
    }

    /** Line segments (GL_LINES): points Float32Array (M*3) and the camera index of each point (M). */
    setLines(points, cameraIds) {
      const m = cameraIds.length;
      const packed = new Float32Array(m * 4);
      for (let i = 0; i < m; i++) packed.set([points[3 * i], points[3 * i + 1], points[3 * i + 2], cameraIds[i]], 4 * i);
      const gl = this.gl;
      gl.bindBuffer(gl.ARRAY_BUFFER, this.lineBuffer);
      gl.bufferData(gl.ARRAY_BUFFER, packed, gl.STATIC_DRAW);
      this.lineCount = m;
    }

    /** A colour target of the canvas size: float when blendable (see the file comment), else 8-bit. */
    ensureTarget(width, height) {
      if (this.target && this.target.width === width && this.target.height === height) return this.target;
      const gl = this.gl;
      if (this.target) {
        gl.deleteTexture(this.target.texture);
        gl.deleteFramebuffer(this.target.fbo);
      }
      const formats = [];
      if (this.floatTarget && this.floatBlend) formats.push([gl.RGBA32F, gl.FLOAT, 'RGBA32F']);
      if (this.floatTarget) formats.push([gl.RGBA16F, gl.HALF_FLOAT, 'RGBA16F']);
      formats.push([gl.RGBA8, gl.UNSIGNED_BYTE, 'RGBA8']);
      for (const [internal, type, name] of formats) {
        const texture = gl.createTexture();
        gl.bindTexture(gl.TEXTURE_2D, texture);
        gl.texImage2D(gl.TEXTURE_2D, 0, internal, width, height, 0, gl.RGBA, type, null);
        gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.NEAREST);
        gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.NEAREST);
        const fbo = gl.createFramebuffer();
        gl.bindFramebuffer(gl.FRAMEBUFFER, fbo);
        gl.framebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.TEXTURE_2D, texture, 0);
        const ok = gl.checkFramebufferStatus(gl.FRAMEBUFFER) === gl.FRAMEBUFFER_COMPLETE;
        gl.bindFramebuffer(gl.FRAMEBUFFER, null);
        if (ok) {
          this.target = { texture, fbo, width, height, format: name };
          return this.target;
        }
        gl.deleteTexture(texture);
        gl.deleteFramebuffer(fbo);
      }
      throw new Error('no usable colour render target');
    }

    setCamera(uniforms, view) {
      const gl = this.gl;
      gl.uniformMatrix4fv(uniforms.u_viewRows, false, new Float32Array(view.viewmat));
      gl.uniform4f(uniforms.u_intrinsics, view.fx, view.fy, view.cx, view.cy);
      gl.uniform1f(uniforms.u_skew, view.skew || 0);
      gl.uniform2f(uniforms.u_size, view.width, view.height);
    }

    /**
     * Draws a frame into the canvas (whose size must be view.width x view.height).
     * view: {viewmat (16, row-major world-to-camera), fx, fy, cx, cy, skew, width, height, background [r,g,b],
     *        near, far, lines (bool), activeCamera (index highlighted among the frusta)}.
     */
    draw(view) {
      const gl = this.gl;
      const { width, height } = view;
      const target = this.ensureTarget(width, height);
      const bg = view.background;

      gl.bindFramebuffer(gl.FRAMEBUFFER, target.fbo);
      gl.viewport(0, 0, width, height);
      gl.disable(gl.DEPTH_TEST);
      gl.clearColor(bg[0], bg[1], bg[2], 1);
      gl.clear(gl.COLOR_BUFFER_BIT);
      if (this.count > 0) {
        gl.enable(gl.BLEND);
        gl.blendFuncSeparate(gl.ONE, gl.ONE_MINUS_SRC_ALPHA, gl.ONE, gl.ONE_MINUS_SRC_ALPHA);
        gl.useProgram(this.splatProg.program);
        const u = this.splatProg.uniforms;
        this.setCamera(u, view);
        gl.uniform2f(u.u_depthRange, view.near ?? 0.01, view.far ?? 1e10);
        gl.bindVertexArray(this.splatVao);
        gl.drawArraysInstanced(gl.TRIANGLE_STRIP, 0, 4, this.count);
        gl.disable(gl.BLEND);
      }

      gl.bindFramebuffer(gl.FRAMEBUFFER, null);
      gl.viewport(0, 0, width, height);
      gl.useProgram(this.copyProg.program);
      gl.activeTexture(gl.TEXTURE0);
      gl.bindTexture(gl.TEXTURE_2D, target.texture);
      gl.uniform1i(this.copyProg.uniforms.u_image, 0);
      gl.bindVertexArray(this.emptyVao);
      gl.drawArrays(gl.TRIANGLES, 0, 3);

      if (view.lines && this.lineCount > 0) {
        gl.enable(gl.BLEND);
        gl.blendFunc(gl.ONE, gl.ONE_MINUS_SRC_ALPHA);
        gl.useProgram(this.lineProg.program);
        const u = this.lineProg.uniforms;
        this.setCamera(u, view);
        gl.uniform1f(u.u_active, view.activeCamera ?? -1);
        gl.bindVertexArray(this.lineVao);
        gl.drawArrays(gl.LINES, 0, this.lineCount);
        gl.disable(gl.BLEND);
      }
      gl.bindVertexArray(null);
    }
  }

  root.A4DRender = { SplatRenderer };
})(typeof self !== 'undefined' ? self : this);
