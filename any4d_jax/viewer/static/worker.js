/*
 * worker.js -- runs motion.js off the main thread for interactive viewing.
 *
 * Messages in:   {type: 'load', buffer: ArrayBuffer, name}                (the buffer is transferred)
 *                {type: 'frame', id, t, viewmat: 16 numbers}
 * Messages out:  {type: 'loaded', info}    header and cameras of the scene (see sceneInfo)
 *                {type: 'frame', id, t, viewmat, data: Float32Array, count}   (data is transferred)
 *                {type: 'error', message}
 */
/* global importScripts, A4D, A4DMotion */
importScripts('a4d.js', 'motion.js');

let builder = null;

/** What the page needs besides the splats: the header fields and the training cameras. */
function sceneInfo(scene) {
  const { camera_viewmats: viewmats, camera_Ks: Ks, camera_times: times, means } = scene.arrays;
  const info = Object.assign({}, scene, { arrays: undefined });
  info.cameras = { viewmats: viewmats.slice(), Ks: Ks.slice(), times: times.slice() };
  info.canonicalMeans = means.slice();
  return info;
}

self.onmessage = (event) => {
  const msg = event.data;
  try {
    if (msg.type === 'load') {
      const scene = A4D.parse(msg.buffer, msg.name);
      builder = new A4DMotion.FrameBuilder(scene);
      self.postMessage({ type: 'loaded', info: sceneInfo(scene) });
    } else if (msg.type === 'frame' && builder !== null) {
      const { data, count } = builder.build(msg.t, msg.viewmat);
      self.postMessage({ type: 'frame', id: msg.id, t: msg.t, viewmat: msg.viewmat, data, count }, [data.buffer]);
    }
  } catch (e) {
    self.postMessage({ type: 'error', message: e && e.message ? e.message : String(e) });
  }
};
