/*
 * viewer.js -- the page: loading, camera controls, time slider and playback, frusta, and capture mode.
 *
 * URL parameters
 *   scene=URL            .a4d file to fetch (a file can also be opened with the picker or dropped on the page)
 *   t=T                  initial time (frames, fractional allowed)
 *   viewmat=16 numbers   initial camera, row-major world-to-camera (OpenCV), with fx, fy, cx, cy [, skew]
 *   fx=, fy=, cx=, cy=   its intrinsics in pixels of width x height
 *   width=, height=      canvas size in pixels (capture mode; in the UI intrinsics are rescaled to the canvas)
 *   capture=1            deterministic capture: canvas exactly width x height, devicePixelRatio ignored, no UI,
 *                        no frusta, everything on the main thread; when the frame is drawn the PNG data URL is
 *                        written into <pre id="capture" data-status="ok">, or the error into the same element
 *                        with data-status="error" (read by any4d_jax/viewer/capture.py through --dump-dom)
 *   sync=1               evaluate frames on the main thread instead of the worker (headless screenshots)
 *   page=WxH             lay the page out at exactly W x H CSS pixels, whatever the window (headless
 *                        screenshots: Chromium resizes its view for --screenshot, which would clear the canvas)
 *
 * Mouse: left drag orbits about the target, right drag (or shift + drag) pans, the wheel zooms.
 * Keys: space play/pause, left/right previous/next frame, c snap to the training camera of the current time,
 * f show/hide the frusta.
 */
/* global A4D, A4DMotion, A4DRender */
(function () {
  'use strict';

  const params = new URLSearchParams(location.search);
  const CAPTURE = params.get('capture') === '1';
  const SYNC = CAPTURE || params.get('sync') === '1';
  const $ = (id) => document.getElementById(id);
  const PAGE = /^(\d+)x(\d+)$/.exec(params.get('page') || '');
  if (PAGE) {
    for (const el of [document.documentElement, document.body]) {
      el.style.width = PAGE[1] + 'px';
      el.style.height = PAGE[2] + 'px';
    }
  }

  // ---------------------------------------------------------------------------------------------------------
  // Errors: always shown on the page (and in capture mode in the capture element, for the test to read).
  // ---------------------------------------------------------------------------------------------------------

  function setCapture(status, text) {
    const el = $('capture');
    if (el.dataset.status === 'error') return; // keep the first error
    el.dataset.status = status;
    el.textContent = text;
  }

  function reportError(message) {
    console.error(message);
    const el = $('errors');
    el.textContent += (el.textContent ? '\n' : '') + message;
    el.hidden = false;
    if (CAPTURE) setCapture('error', message);
  }

  window.addEventListener('error', (e) => reportError('error: ' + (e.error && e.error.message ? e.error.message : e.message)));
  window.addEventListener('unhandledrejection', (e) => {
    const r = e.reason;
    reportError('error: ' + (r && r.message ? r.message : String(r)));
  });

  // ---------------------------------------------------------------------------------------------------------
  // Small vector and camera helpers (matrices are 16 numbers, row-major, world-to-camera, OpenCV axes).
  // ---------------------------------------------------------------------------------------------------------

  const sub = (a, b) => [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
  const add = (a, b) => [a[0] + b[0], a[1] + b[1], a[2] + b[2]];
  const scale = (a, s) => [a[0] * s, a[1] * s, a[2] * s];
  const dot = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
  const cross = (a, b) => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
  const normalize = (a) => scale(a, 1 / Math.max(Math.hypot(a[0], a[1], a[2]), 1e-12));

  /** Row i of the rotation of a viewmat: camera axis i (0 right, 1 down, 2 forward) in world coordinates. */
  const axis = (V, i) => [V[4 * i], V[4 * i + 1], V[4 * i + 2]];

  /** Camera centre -R^T t of a viewmat. */
  function cameraCenter(V) {
    return [0, 1, 2].map((j) => -(V[j] * V[3] + V[4 + j] * V[7] + V[8 + j] * V[11]));
  }

  /** World-to-camera matrix of a camera at `eye` looking at `target` with `up` up in the image (as cameras.look_at). */
  function lookAt(eye, target, up) {
    const z = normalize(sub(target, eye));
    const x = normalize(cross(scale(up, -1), z));
    const y = cross(z, x);
    return [...x, -dot(x, eye), ...y, -dot(y, eye), ...z, -dot(z, eye), 0, 0, 0, 1];
  }

  /**
   * Orbit camera: a target, a distance and two angles in a frame whose third axis is the scene's up direction
   * (taken from the training cameras). Until the user moves it, an exact viewmat (from the URL or a training
   * camera) may override it.
   */
  class OrbitCamera {
    constructor(up) {
      this.up = normalize(up);
      const helper = Math.abs(this.up[0]) < 0.9 ? [1, 0, 0] : [0, 1, 0];
      this.e1 = normalize(cross(helper, this.up));
      this.e2 = cross(this.up, this.e1);
      this.target = [0, 0, 0];
      this.distance = 1;
      this.azimuth = 0;
      this.elevation = 0;
      this.exact = null;
    }

    /** Puts the camera at the pose of viewmat V, orbiting about the point `distance` ahead of it. */
    setFromView(V, distance, exact = true) {
      const forward = axis(V, 2);
      const eye = cameraCenter(V);
      this.distance = Math.max(distance, 1e-3);
      this.target = add(eye, scale(forward, this.distance));
      const back = scale(forward, -1);
      this.elevation = Math.asin(Math.max(-1, Math.min(1, dot(back, this.up))));
      this.azimuth = Math.atan2(dot(back, this.e2), dot(back, this.e1));
      this.exact = exact ? Array.from(V) : null;
    }

    eye() {
      const ce = Math.cos(this.elevation);
      const dir = add(add(scale(this.e1, ce * Math.cos(this.azimuth)), scale(this.e2, ce * Math.sin(this.azimuth))),
        scale(this.up, Math.sin(this.elevation)));
      return add(this.target, scale(dir, this.distance));
    }

    viewmat() {
      return this.exact ? this.exact : lookAt(this.eye(), this.target, this.up);
    }

    orbit(dx, dy) {
      this.exact = null;
      this.azimuth -= dx * 0.006;
      this.elevation = Math.max(-1.5, Math.min(1.5, this.elevation + dy * 0.006));
    }

    /** Moves the target with the image by (dx, dy) pixels at focal length f. */
    pan(dx, dy, f) {
      const V = this.viewmat();
      this.exact = null;
      const k = this.distance / f;
      this.target = sub(this.target, add(scale(axis(V, 0), dx * k), scale(axis(V, 1), dy * k)));
    }

    zoom(amount) {
      this.exact = null;
      this.distance *= Math.exp(amount);
    }
  }

  // ---------------------------------------------------------------------------------------------------------
  // Frame sources: motion.js in a worker (interactive) or on the main thread (capture, sync=1).
  // ---------------------------------------------------------------------------------------------------------

  /** The scene's header fields, its cameras and canonical centres (what worker.js' sceneInfo sends). */
  function sceneInfo(scene) {
    const a = scene.arrays;
    return Object.assign({}, scene, {
      arrays: undefined,
      cameras: { viewmats: a.camera_viewmats, Ks: a.camera_Ks, times: a.camera_times },
      canonicalMeans: a.means,
    });
  }

  class SyncSource {
    load(buffer, name) {
      const scene = A4D.parse(buffer, name);
      this.builder = new A4DMotion.FrameBuilder(scene);
      return Promise.resolve(sceneInfo(scene));
    }

    frame(t, viewmat) {
      return Promise.resolve(Object.assign({ t, viewmat }, this.builder.build(t, viewmat)));
    }
  }

  class WorkerSource {
    constructor() {
      this.worker = new Worker('worker.js');
      this.pending = new Map();
      this.nextId = 0;
      this.worker.onmessage = (e) => this.receive(e.data);
      this.worker.onerror = (e) => reportError('worker: ' + e.message);
    }

    receive(msg) {
      if (msg.type === 'error') {
        for (const { reject } of this.pending.values()) reject(new Error(msg.message));
        this.pending.clear();
        return;
      }
      const key = msg.type === 'loaded' ? 'load' : msg.id;
      const p = this.pending.get(key);
      this.pending.delete(key);
      if (p) p.resolve(msg.type === 'loaded' ? msg.info : msg);
    }

    request(key, msg, transfer) {
      return new Promise((resolve, reject) => {
        this.pending.set(key, { resolve, reject });
        this.worker.postMessage(msg, transfer || []);
      });
    }

    load(buffer, name) {
      return this.request('load', { type: 'load', buffer, name }, [buffer]);
    }

    frame(t, viewmat) {
      const id = this.nextId++;
      return this.request(id, { type: 'frame', id, t, viewmat: Array.from(viewmat) });
    }

    close() {
      this.worker.terminate();
    }
  }

  async function fetchScene(url) {
    let response;
    try {
      response = await fetch(url, { cache: 'no-store' });
    } catch (e) {
      throw new Error(`could not fetch ${url}: ${e.message}`);
    }
    if (!response.ok) throw new Error(`could not fetch ${url}: HTTP ${response.status}`);
    return response.arrayBuffer();
  }

  /** Numbers of a URL parameter (comma separated); throws naming the parameter if absent or malformed. */
  function numbers(name, count) {
    const raw = params.get(name);
    if (raw === null) throw new Error(`URL parameter ${name} is missing`);
    const values = raw.split(',').map(Number);
    if (values.length !== count || values.some((v) => !Number.isFinite(v))) {
      throw new Error(`URL parameter ${name} must be ${count} finite number(s), got ${JSON.stringify(raw)}`);
    }
    return count === 1 ? values[0] : values;
  }

  /** The exact camera given in the URL: {viewmat, fx, fy, cx, cy, skew, width, height}. */
  function urlCamera() {
    return {
      viewmat: numbers('viewmat', 16),
      fx: numbers('fx', 1), fy: numbers('fy', 1), cx: numbers('cx', 1), cy: numbers('cy', 1),
      skew: params.has('skew') ? numbers('skew', 1) : 0,
      width: Math.round(numbers('width', 1)), height: Math.round(numbers('height', 1)),
    };
  }

  // ---------------------------------------------------------------------------------------------------------
  // Capture mode.
  // ---------------------------------------------------------------------------------------------------------

  async function runCapture() {
    document.body.classList.add('capture');
    const cam = urlCamera();
    const t = numbers('t', 1);
    const canvas = $('canvas');
    canvas.width = cam.width; // device pixels, whatever devicePixelRatio is
    canvas.height = cam.height;
    canvas.style.width = cam.width + 'px';
    canvas.style.height = cam.height + 'px';
    const renderer = new A4DRender.SplatRenderer(canvas, { preserveDrawingBuffer: true });
    const url = params.get('scene');
    if (!url) throw new Error('URL parameter scene is missing');
    const source = new SyncSource();
    const info = await source.load(await fetchScene(url), url);
    const frame = await source.frame(t, cam.viewmat);
    renderer.upload(frame.data, frame.count);
    renderer.draw(Object.assign({ background: info.background, lines: false }, cam));
    canvas.dataset.target = renderer.target.format;
    setCapture('ok', canvas.toDataURL('image/png'));
  }

  // ---------------------------------------------------------------------------------------------------------
  // Interactive viewer.
  // ---------------------------------------------------------------------------------------------------------

  class Viewer {
    constructor() {
      this.canvas = $('canvas');
      // Headless screenshots (sync=1) may composite the page after the last draw: keep the drawing buffer.
      this.renderer = new A4DRender.SplatRenderer(this.canvas, { preserveDrawingBuffer: SYNC });
      this.info = null;
      this.source = null;
      this.time = 0;
      this.playing = false;
      this.showFrusta = true;
      this.dirty = true;
      this.busy = false; // a frame request is in flight
      this.shown = null; // {t, viewmat} of the splats on the GPU
      this.lastTick = null;
      this.bindUi();
      new ResizeObserver(() => this.resize()).observe($('stage'));
      this.resize();
      requestAnimationFrame((ts) => this.tick(ts));
    }

    bindUi() {
      $('play').addEventListener('click', () => this.setPlaying(!this.playing));
      $('time').addEventListener('input', (e) => this.setTime(Number(e.target.value)));
      $('frusta').addEventListener('change', (e) => { this.showFrusta = e.target.checked; this.dirty = true; });
      $('snap').addEventListener('click', () => this.snapToTrainingCamera());
      $('file').addEventListener('change', (e) => {
        if (e.target.files.length) this.openFile(e.target.files[0]);
      });
      document.addEventListener('dragover', (e) => { e.preventDefault(); document.body.classList.add('dragging'); });
      document.addEventListener('dragleave', () => document.body.classList.remove('dragging'));
      document.addEventListener('drop', (e) => {
        e.preventDefault();
        document.body.classList.remove('dragging');
        if (e.dataTransfer.files.length) this.openFile(e.dataTransfer.files[0]);
      });
      document.addEventListener('keydown', (e) => this.onKey(e));
      this.bindMouse();
    }

    bindMouse() {
      const c = this.canvas;
      let drag = null;
      c.addEventListener('contextmenu', (e) => e.preventDefault());
      c.addEventListener('pointerdown', (e) => {
        c.setPointerCapture(e.pointerId);
        drag = { x: e.clientX, y: e.clientY, pan: e.button === 2 || e.button === 1 || e.shiftKey };
      });
      c.addEventListener('pointermove', (e) => {
        if (!drag || !this.camera) return;
        const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
        drag.x = e.clientX;
        drag.y = e.clientY;
        const dpr = window.devicePixelRatio || 1;
        if (drag.pan) this.camera.pan(dx * dpr, dy * dpr, this.intrinsics().fy);
        else this.camera.orbit(dx, dy);
        this.dirty = true;
      });
      c.addEventListener('pointerup', () => { drag = null; });
      c.addEventListener('wheel', (e) => {
        e.preventDefault();
        if (!this.camera) return;
        this.camera.zoom(Math.max(-1, Math.min(1, e.deltaY * 0.001)));
        this.dirty = true;
      }, { passive: false });
    }

    onKey(e) {
      if (!this.info || e.target.tagName === 'INPUT' && e.target.type !== 'range') return;
      if (e.key === ' ') this.setPlaying(!this.playing);
      else if (e.key === 'ArrowRight') this.setTime(Math.min(Math.floor(this.time) + 1, this.info.numFrames - 1));
      else if (e.key === 'ArrowLeft') this.setTime(Math.max(Math.ceil(this.time) - 1, 0));
      else if (e.key === 'c') this.snapToTrainingCamera();
      else if (e.key === 'f') { this.showFrusta = !this.showFrusta; $('frusta').checked = this.showFrusta; this.dirty = true; }
      else return;
      e.preventDefault();
    }

    resize() {
      const dpr = window.devicePixelRatio || 1;
      const rect = $('stage').getBoundingClientRect();
      this.canvas.width = Math.max(1, Math.round(rect.width * dpr));
      this.canvas.height = Math.max(1, Math.round(rect.height * dpr));
      this.dirty = true;
    }

    /** Intrinsics of the canvas: the exact URL camera if given, else the training focal length rescaled. */
    intrinsics() {
      const W = this.canvas.width, H = this.canvas.height;
      const u = this.urlCam;
      if (u && this.camera.exact === u.viewmat) { // the URL camera, scaled to the canvas height and centred
        const s = H / u.height;
        return { fx: u.fx * s, fy: u.fy * s, cx: u.cx * s + 0.5 * (W - u.width * s), cy: u.cy * s, skew: u.skew * s,
          width: W, height: H };
      }
      const K = this.info.cameras.Ks;
      const ratio = K[0] / K[4]; // fx / fy of the training camera
      const fy = K[4] * (H / this.info.height);
      return { fx: fy * ratio, fy, cx: 0.5 * W, cy: 0.5 * H, skew: 0, width: W, height: H };
    }

    async openUrl(url) {
      this.setStatus(`loading ${url} ...`);
      await this.load(await fetchScene(url), url.split('/').pop());
    }

    async openFile(file) {
      this.setStatus(`loading ${file.name} ...`);
      try {
        await this.load(await file.arrayBuffer(), file.name);
      } catch (e) {
        reportError(e.message);
      }
    }

    async load(buffer, name) {
      const bytes = buffer.byteLength;
      if (this.source && this.source.close) this.source.close();
      this.source = SYNC ? new SyncSource() : new WorkerSource();
      this.info = null;
      $('errors').hidden = true;
      $('errors').textContent = '';
      const info = await this.source.load(buffer, name);
      this.info = info;
      this.busy = false;
      this.shown = null;
      this.renderer.upload(new Float32Array(0), 0);
      this.setupCamera();
      this.setupFrusta();
      const slider = $('time');
      slider.max = String(info.numFrames - 1);
      this.setTime(params.has('t') ? numbers('t', 1) : info.canonicalFrame);
      $('info').textContent = `${name} - ${info.numGaussians.toLocaleString()} Gaussians, ${info.numFrames} frames `
        + `at ${info.fps} fps, SH degree ${info.shDegree}, ${info.numBases} motion bases (${info.timeBasis}), `
        + `${(bytes / 1e6).toFixed(2)} MB`;
      document.body.classList.add('loaded');
      this.setStatus('');
    }

    /** Median distance along the view axis from camera V to the canonical centres (a good orbit target). */
    medianDepth(V) {
      const m = this.info.canonicalMeans;
      const n = m.length / 3;
      const step = Math.max(1, Math.floor(n / 4096));
      const depths = [];
      for (let i = 0; i < n; i += step) {
        const z = V[8] * m[3 * i] + V[9] * m[3 * i + 1] + V[10] * m[3 * i + 2] + V[11];
        if (z > 0) depths.push(z);
      }
      depths.sort((a, b) => a - b);
      return depths.length ? depths[depths.length >> 1] : 1;
    }

    setupCamera() {
      const cams = this.info.cameras;
      const F = cams.times.length;
      let up = [0, 0, 0];
      for (let f = 0; f < F; f++) up = sub(up, axis(cams.viewmats.subarray(16 * f, 16 * f + 16), 1));
      if (F === 0 || Math.hypot(...up) < 1e-6) up = [0, -1, 0];
      this.camera = new OrbitCamera(up);
      this.urlCam = null;
      if (params.has('viewmat')) {
        this.urlCam = urlCamera();
        this.camera.setFromView(this.urlCam.viewmat, this.medianDepth(this.urlCam.viewmat), true);
        this.urlCam.viewmat = this.camera.exact;
      } else if (F > 0) {
        this.setOverview();
      } else {
        this.camera.distance = 3;
      }
    }

    /**
     * Default view: behind and above the training cameras, looking at what they see, so that the scene and the
     * camera trajectory are both in view (as capture.overview_camera does in Python).
     */
    setOverview(pullBack = 2.2, lift = 0.6) {
      const { viewmats } = this.info.cameras;
      const F = viewmats.length / 16;
      const depth = this.medianDepth(viewmats.subarray(0, 16));
      let target = [0, 0, 0], mean = [0, 0, 0];
      for (let f = 0; f < F; f++) {
        const V = viewmats.subarray(16 * f, 16 * f + 16);
        const c = cameraCenter(V);
        mean = add(mean, scale(c, 1 / F));
        target = add(target, scale(add(c, scale(axis(V, 2), depth)), 1 / F));
      }
      const offset = sub(mean, target);
      const length = Math.hypot(...offset);
      const eye = add(add(target, scale(offset, pullBack)), scale(this.camera.up, lift * length));
      const V = lookAt(eye, target, this.camera.up);
      this.camera.setFromView(V, Math.hypot(...sub(target, eye)), false);
    }

    /** Frusta of the training cameras (depth: a tenth of the median scene depth) and their trajectory. */
    setupFrusta() {
      const { viewmats, Ks, times } = this.info.cameras;
      const F = times.length;
      const W = this.info.width, H = this.info.height;
      const points = [], ids = [];
      const size = F ? 0.12 * this.medianDepth(viewmats.subarray(0, 16)) : 0;
      let previous = null;
      for (let f = 0; f < F; f++) {
        const V = viewmats.subarray(16 * f, 16 * f + 16);
        const K = Ks.subarray(9 * f, 9 * f + 9);
        const c = cameraCenter(V);
        const toWorld = (u, v) => { // pixel (u, v) at depth `size` -> world
          const y = (v - K[5]) / K[4];
          const x = (u - K[2] - K[1] * y) / K[0];
          const p = [x * size, y * size, size];
          return add(c, add(add(scale(axis(V, 0), p[0]), scale(axis(V, 1), p[1])), scale(axis(V, 2), p[2])));
        };
        const corners = [toWorld(0, 0), toWorld(W, 0), toWorld(W, H), toWorld(0, H)];
        const segments = [];
        for (let k = 0; k < 4; k++) segments.push(c, corners[k], corners[k], corners[(k + 1) % 4]);
        // A small tick on the top edge shows which way is up.
        const top = toWorld(W / 2, -0.15 * H);
        segments.push(corners[0], top, top, corners[1]);
        for (const p of segments) { points.push(...p); ids.push(f); }
        if (previous) { points.push(...previous, ...c); ids.push(-1, -1); }
        previous = c;
      }
      this.renderer.setLines(new Float32Array(points), ids);
    }

    setStatus(text) {
      $('status').textContent = text;
    }

    setTime(t) {
      this.time = t;
      $('time').value = String(t);
      $('time-label').textContent = `t = ${t.toFixed(2)} / ${this.info.numFrames - 1}`;
      this.dirty = true;
    }

    setPlaying(playing) {
      this.playing = playing && !!this.info;
      $('play').textContent = this.playing ? 'Pause' : 'Play';
      this.lastTick = null;
    }

    /** Index of the training camera whose time is nearest the current time. */
    activeCamera() {
      const times = this.info.cameras.times;
      let best = -1, bestDist = Infinity;
      for (let f = 0; f < times.length; f++) {
        const d = Math.abs(times[f] - this.time);
        if (d < bestDist) { best = f; bestDist = d; }
      }
      return best;
    }

    snapToTrainingCamera() {
      const f = this.activeCamera();
      if (f < 0) return;
      const V = this.info.cameras.viewmats.subarray(16 * f, 16 * f + 16);
      this.camera.setFromView(V, this.medianDepth(V), true);
      this.dirty = true;
    }

    /** Asks the source for the splats of the current time and camera, one request at a time. */
    requestFrame(viewmat) {
      if (this.busy) return;
      if (this.shown && this.shown.t === this.time && this.shown.viewmat.every((v, i) => v === viewmat[i])) return;
      this.busy = true;
      const source = this.source;
      source.frame(this.time, viewmat).then((frame) => {
        if (source !== this.source) return;
        this.renderer.upload(frame.data, frame.count);
        this.shown = { t: frame.t, viewmat: Array.from(frame.viewmat) };
        document.body.dataset.framesShown = String(Number(document.body.dataset.framesShown || 0) + 1);
        this.busy = false;
        this.dirty = true;
      }, (e) => { this.busy = false; reportError(e.message); });
    }

    tick(timestamp) {
      if (this.info && this.playing) {
        if (this.lastTick !== null) {
          const T = this.info.numFrames;
          let t = this.time + ((timestamp - this.lastTick) / 1000) * this.info.fps;
          if (t > T - 1) t = T > 1 ? t % (T - 1) : 0;
          this.setTime(t);
        }
        this.lastTick = timestamp;
      }
      if (this.info && this.dirty) {
        const viewmat = this.camera.viewmat();
        this.requestFrame(viewmat);
        const view = Object.assign({}, this.intrinsics(), {
          viewmat, background: this.info.background, lines: this.showFrusta, activeCamera: this.activeCamera(),
        });
        this.renderer.draw(view);
        // Until the sorted splats of this camera and time arrive, keep redrawing.
        this.dirty = this.busy;
        if (SYNC && !this.dirty) this.snapshot();
      }
      requestAnimationFrame((ts) => this.tick(ts));
    }

    /** Headless screenshots (sync=1): show the finished frame as an <img> over the canvas. Chromium's
     * --screenshot does not reliably composite a software-GL canvas, but a decoded image it always does. */
    snapshot() {
      let img = $('snapshot');
      if (!img) {
        img = document.createElement('img');
        img.id = 'snapshot';
        img.style.cssText = 'position:absolute;inset:0;width:100%;height:100%;pointer-events:none';
        this.canvas.after(img);
      }
      img.src = this.canvas.toDataURL('image/png');
    }
  }

  // ---------------------------------------------------------------------------------------------------------
  // Start.
  // ---------------------------------------------------------------------------------------------------------

  function start() {
    if (CAPTURE) {
      runCapture().catch((e) => reportError(e && e.message ? e.message : String(e)));
      return;
    }
    const viewer = new Viewer();
    window.a4dViewer = viewer; // for debugging in the console
    const url = params.get('scene');
    if (url) viewer.openUrl(url).catch((e) => { reportError(e.message); viewer.setStatus(''); });
    else viewer.setStatus('Open an .a4d file or drop one on the page.');
  }

  start();
})();
