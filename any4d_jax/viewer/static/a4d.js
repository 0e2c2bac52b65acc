/*
 * a4d.js -- reader of the compact 4D scene format `.a4d` (docs/format.md), for pages and web workers.
 *
 *   A4D.parse(arrayBuffer, name) -> scene      throws A4D.A4DError with a readable message on a bad file
 *
 * The checks follow docs/format.md: magic, major version, header CRC-32, truncation, payload CRC-32, and that
 * every array lies inside the payload with the shape the header counts imply. float16 ("f2") arrays are
 * decoded by hand through a 65536-entry table (no dependence on Float16Array). Every array comes back as a
 * Float32Array in C order, whatever the file stores.
 *
 * Plain script, no modules: it defines the global `A4D` both in a window and in a worker (importScripts).
 */
(function (root) {
  'use strict';

  const MAGIC = [0x41, 0x34, 0x44, 0x00]; // "A4D\0"
  const READER_MAJOR = 1; // reads every 1.x file: minor versions only add header keys
  const PREAMBLE_BYTES = 16;
  const ARRAY_NAMES = [
    'means', 'quats', 'scales', 'opacities', 'sh', 'weights', 'generator', 'learnable',
    'generator_pivots', 'learnable_pivots', 'camera_viewmats', 'camera_Ks', 'camera_times',
  ];
  const ITEM_BYTES = { f4: 4, f2: 2 };

  /** A file that is not a readable .a4d (wrong magic, newer version, truncated, corrupted). */
  class A4DError extends Error {
    constructor(message) {
      super(message);
      this.name = 'A4DError';
    }
  }

  let crcTable = null;

  /** CRC-32 (zlib / IEEE 802.3, reflected polynomial 0xEDB88320) of a Uint8Array, as an unsigned int. */
  function crc32(bytes) {
    if (crcTable === null) {
      crcTable = new Uint32Array(256);
      for (let n = 0; n < 256; n++) {
        let c = n;
        for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
        crcTable[n] = c >>> 0;
      }
    }
    let crc = 0xffffffff;
    for (let i = 0; i < bytes.length; i++) crc = crcTable[(crc ^ bytes[i]) & 0xff] ^ (crc >>> 8);
    return (crc ^ 0xffffffff) >>> 0;
  }

  /** The value of one IEEE binary16 bit pattern (0..65535): subnormals, infinities and NaN included. */
  function halfToFloat(h) {
    const sign = h & 0x8000 ? -1 : 1;
    const exponent = (h >> 10) & 0x1f;
    const mantissa = h & 0x3ff;
    if (exponent === 0) return sign * mantissa * Math.pow(2, -24); // zero and subnormals
    if (exponent === 31) return mantissa ? NaN : sign * Infinity;
    return sign * (1 + mantissa / 1024) * Math.pow(2, exponent - 15);
  }

  let halfTable = null;

  /** Float32Array of the float16 values stored little-endian at bytes[offset ..] (count of them). */
  function decodeHalf(view, offset, count) {
    if (halfTable === null) {
      halfTable = new Float32Array(65536);
      for (let h = 0; h < 65536; h++) halfTable[h] = halfToFloat(h);
    }
    const out = new Float32Array(count);
    for (let i = 0; i < count; i++) out[i] = halfTable[view.getUint16(offset + 2 * i, true)];
    return out;
  }

  /** Float32Array of the float32 values stored little-endian at bytes[offset ..] (count of them). */
  function decodeFloat(view, offset, count) {
    const out = new Float32Array(count);
    for (let i = 0; i < count; i++) out[i] = view.getFloat32(offset + 4 * i, true);
    return out;
  }

  /** The header counts that fix every array's shape, checked against the arrays themselves. */
  function expectedShapes(h) {
    const n = h.num_gaussians;
    const c = h.num_generator_channels;
    const bl = h.num_learnable_bases;
    const kt = h.num_time_coeffs;
    const f = h.num_cameras;
    const k = (h.sh_degree + 1) * (h.sh_degree + 1);
    return {
      means: [n, 3], quats: [n, 4], scales: [n, 3], opacities: [n], sh: [n, k, 3], weights: [n, 6 * c + bl],
      generator: [kt, c, 6], learnable: [kt, bl, 6], generator_pivots: [c, 3], learnable_pivots: [bl, 3],
      camera_viewmats: [f, 4, 4], camera_Ks: [f, 3, 3], camera_times: [f],
    };
  }

  /** Checks the header keys the viewer relies on; throws A4DError naming the first bad one. */
  function checkHeader(h, name) {
    const ints = ['num_gaussians', 'sh_degree', 'num_generator_channels', 'num_learnable_bases', 'num_cameras',
      'num_frames', 'canonical_frame', 'num_time_coeffs', 'width', 'height', 'payload_bytes', 'payload_crc32'];
    for (const key of ints) {
      if (!Number.isInteger(h[key]) || h[key] < 0) {
        throw new A4DError(`${name}: header key ${key} is missing or not a non-negative integer`);
      }
    }
    if (h.sh_degree > 3) throw new A4DError(`${name}: sh_degree ${h.sh_degree} is not in 0..3`);
    if (h.num_frames < 1 || h.canonical_frame >= h.num_frames) {
      throw new A4DError(`${name}: canonical_frame ${h.canonical_frame} outside 0..${h.num_frames - 1}`);
    }
    if (h.time_basis !== 'dct' && h.time_basis !== 'per_frame' && h.time_basis !== 'bspline') {
      throw new A4DError(`${name}: unknown time_basis ${JSON.stringify(h.time_basis)}`);
    }
    if (!Array.isArray(h.background) || h.background.length !== 3) {
      throw new A4DError(`${name}: header key background must be [r, g, b]`);
    }
    if (typeof h.arrays !== 'object' || h.arrays === null) throw new A4DError(`${name}: the header lists no arrays`);
  }

  /**
   * Parses a whole .a4d file.
   *
   * buffer: ArrayBuffer (or a typed array / DataView over one); name: used in error messages.
   * Returns {name, header, numGaussians, shDegree, shCoeffs, numGeneratorChannels, numLearnable, numBases,
   *          numTimeCoeffs, numFrames, canonicalFrame, timeBasis, fps, width, height, background, numCameras,
   *          arrays: {means, quats, ...: Float32Array}, shapes: {name: [...]}}.
   */
  function parse(buffer, name = '<file>') {
    const bytes = ArrayBuffer.isView(buffer)
      ? new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength)
      : new Uint8Array(buffer);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const size = bytes.length;
    if (size < PREAMBLE_BYTES) {
      throw new A4DError(`${name}: truncated (${size} bytes; an .a4d file starts with ${PREAMBLE_BYTES})`);
    }
    for (let i = 0; i < 4; i++) {
      if (bytes[i] !== MAGIC[i]) throw new A4DError(`${name}: not an .a4d file (wrong magic bytes)`);
    }
    const major = view.getUint16(4, true);
    const minor = view.getUint16(6, true);
    const headerBytes = view.getUint32(8, true);
    const headerCrc = view.getUint32(12, true);
    if (major > READER_MAJOR) {
      throw new A4DError(
        `${name}: written by format version ${major}.${minor}, newer than this viewer (${READER_MAJOR}.x)`);
    }
    if (major < 1) throw new A4DError(`${name}: unknown format version ${major}.${minor}`);
    const start = PREAMBLE_BYTES + headerBytes;
    if (size < start) throw new A4DError(`${name}: truncated inside the header (${size} of ${start}+ bytes)`);
    const headerView = bytes.subarray(PREAMBLE_BYTES, start);
    if (crc32(headerView) !== headerCrc) {
      throw new A4DError(`${name}: corrupted header (CRC-32 mismatch); re-export the scene`);
    }
    let header;
    try {
      header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerView));
    } catch (e) {
      throw new A4DError(`${name}: corrupted header (${e.message})`);
    }
    checkHeader(header, name);
    const need = header.payload_bytes;
    if (size - start < need) {
      throw new A4DError(`${name}: truncated (${size} bytes, the header says ${start + need})`);
    }
    if (crc32(bytes.subarray(start, start + need)) !== header.payload_crc32 >>> 0) {
      throw new A4DError(`${name}: corrupted data (payload CRC-32 mismatch); re-export the scene`);
    }

    const shapes = expectedShapes(header);
    const arrays = {};
    for (const key of ARRAY_NAMES) {
      const spec = header.arrays[key];
      if (!spec) throw new A4DError(`${name}: the header lists no array '${key}'`);
      if (!(spec.dtype in ITEM_BYTES)) throw new A4DError(`${name}: array '${key}' has unknown dtype ${spec.dtype}`);
      const want = shapes[key];
      if (!Array.isArray(spec.shape) || spec.shape.join(',') !== want.join(',')) {
        throw new A4DError(`${name}: array '${key}' has shape [${spec.shape}], expected [${want}]`);
      }
      const count = want.reduce((a, b) => a * b, 1);
      const end = spec.offset + count * ITEM_BYTES[spec.dtype];
      if (!Number.isInteger(spec.offset) || spec.offset < 0 || end > need) {
        throw new A4DError(`${name}: array '${key}' runs past the payload (${end} > ${need} bytes)`);
      }
      const at = start + spec.offset;
      arrays[key] = spec.dtype === 'f2' ? decodeHalf(view, at, count) : decodeFloat(view, at, count);
    }

    const c = header.num_generator_channels;
    const bl = header.num_learnable_bases;
    return {
      name,
      header,
      numGaussians: header.num_gaussians,
      shDegree: header.sh_degree,
      shCoeffs: (header.sh_degree + 1) * (header.sh_degree + 1),
      numGeneratorChannels: c,
      numLearnable: bl,
      numBases: 6 * c + bl,
      numTimeCoeffs: header.num_time_coeffs,
      numFrames: header.num_frames,
      canonicalFrame: header.canonical_frame,
      timeBasis: header.time_basis,
      fps: Number(header.fps) > 0 ? Number(header.fps) : 12,
      width: header.width,
      height: header.height,
      background: header.background.map(Number),
      numCameras: header.num_cameras,
      arrays,
      shapes,
    };
  }

  root.A4D = { parse, crc32, halfToFloat, A4DError, ARRAY_NAMES };
})(typeof self !== 'undefined' ? self : this);
