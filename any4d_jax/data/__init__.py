"""Data sources: every one yields `Frames` (images with the cameras they were taken or generated under).

    load(config) -> Dataset     the one switch over config.data.source for recorded data:
        "synthetic"   the procedural dynamic scene (data/synthetic.py): training frames + held-out views
        "iphone"      a DyCheck iPhone scene folder (data/iphone.py): training video + val split + points
The generated source ("prompt") is produced by the generate layer beside this one (generate.load): the
generators build Frames and use this package's synthetic scene, so they sit above it.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import ml_collections
import numpy as np

from any4d_jax.data import camera_noise, handheld, iphone, synthetic, tracks, tracks_io
from any4d_jax.data.frames import Frames

__all__ = ["Dataset", "Frames", "load"]


@dataclasses.dataclass
class Dataset:
    """What a job trains and evaluates on.

    train:        training Frames (time order).
    held_out:     held-out Frames with ground truth (synthetic: static cameras at every time; iphone: the
                  val split), or None.
    extra_points: optional (points (M, 3), colours (M, 3)) static points for the initialisation.
    source:       the source object a job may need (SyntheticConfig, IPhoneScene + Protocol, ...).
    true_cameras: the training cameras as the images were really taken, when `train`'s cameras were
                  perturbed on purpose (data.camera_noise_*, data/camera_noise.py); else None.
    eval_tracks:  ground-truth tracks through the training frames to score tracking with (data/tracks.py;
                  the synthetic scene's exact 3D tracks, DyCheck's keypoints), never trained on; or None.
    metres_per_unit: the scene's scale, for scores in metres (None: unknown).
    """

    train: Frames
    held_out: Frames | None = None
    extra_points: Any = None
    source: Any = None
    true_cameras: Any = None
    eval_tracks: Any = None
    metres_per_unit: float | None = None


def load(config: ml_collections.ConfigDict) -> Dataset:
    """The Dataset of config.data.source (every check of the source happens here, before training)."""
    source = config.data.source
    if source == "synthetic" and config.data.get("scene", "default") == "handheld":
        return load_handheld(config)
    if source == "synthetic":
        sc = synthetic.SyntheticConfig.from_config(config)
        scene, train, held_out = synthetic.make_dataset(sc)
        train = train.replace(tracks=synthetic_tracks(config, scene, sc, train))
        ds = Dataset(train=train, held_out=held_out, source=sc, metres_per_unit=sc.metres_per_unit)
        n_eval = int(config.eval.get("num_tracks", 0))
        if n_eval:  # other points and query frames than the training tracks', on the moving objects only
            ds.eval_tracks = synthetic.ground_truth_tracks(
                scene, sc, train, n_eval, 3, config.seed + 7919, dynamic_fraction=1.0
            )
        deg, frac = config.data.get("camera_noise_deg", 0.0), config.data.get("camera_noise_frac", 0.0)
        if deg == 0 and frac == 0:
            return ds
        ds.train = camera_noise.perturb_frames(train, deg, frac, sc.radius, config.seed)
        ds.true_cameras = train.cameras
        return ds
    if source == "iphone":
        protocol = iphone.get_protocol(config.data.protocol)
        factor = iphone.resolve_factor(config, protocol)
        if not config.data.root:
            raise ValueError("data.root is not set: pass --config.data.root=/path/to/iphone/<scene>")
        scene = iphone.load_scene(
            config.data.root,
            factor=factor,
            covisible_dirs=protocol.covisible_dirs,
            use_depth=config.data.use_depth,
            use_points=config.data.use_points,
        )
        points = iphone.extra_points(scene, config.data.max_points, config.seed)
        train = scene.train.replace(tracks=iphone_tracks(config, scene))
        return Dataset(
            train=train,
            held_out=scene.val,
            extra_points=points,
            source=(scene, protocol),
            eval_tracks=iphone_keypoints(scene),
        )
    if source == "prompt":
        raise ValueError("data.source='prompt' is generated, not loaded: use any4d_jax.generate.load(config)")
    raise ValueError(f"data.source must be 'synthetic', 'iphone' or 'prompt', got {source!r}")


def synthetic_tracks(config: ml_collections.ConfigDict, scene, sc, train: Frames):
    """The training tracks config.data.tracks names for the synthetic scene: None (""), the scene's exact
    tracks ("ground_truth"), or a tracks .npz (data/tracks_io.py)."""
    what = config.data.get("tracks", "")
    if not what:
        return None
    n = int(config.data.num_tracks)
    if what == "ground_truth":
        return synthetic.ground_truth_tracks(
            scene, sc, train, n, int(config.data.track_query_frames), config.seed
        )
    loaded = tracks_io.load_npz(what, train.num_frames, sc.width, sc.height)
    return tracks.subsample(loaded, n, config.seed)


def iphone_tracks(config: ml_collections.ConfigDict, scene):
    """The training tracks config.data.tracks names for an iPhone scene: None (""), Shape of Motion's
    preprocessed TAPIR tracks in the scene folder ("som"), or a tracks .npz (data/tracks_io.py)."""
    what = config.data.get("tracks", "")
    if not what:
        return None
    cams, n = scene.train.cameras, int(config.data.num_tracks)
    if what == "som":
        f = scene.train.num_frames
        queries = np.unique(np.round(np.linspace(0, f - 1, int(config.data.track_query_frames))).astype(int))
        return tracks_io.load_som_tracks(
            scene.root, scene.train_names, scene.factor, cams.width, cams.height, queries, n, config.seed
        )
    loaded = tracks_io.load_npz(what, scene.train.num_frames, cams.width, cams.height)
    return tracks.subsample(loaded, n, config.seed)


def iphone_keypoints(scene):
    """DyCheck's annotated keypoints of the training frames (keypoint/<f>x/train), every annotated frame
    a query frame of its visible keypoints (PCK-T transfers between every pair); None without the folder."""
    if not any(os.path.isdir(os.path.join(scene.root, "keypoint", f"{s}x", "train")) for s in (1, 2, 4)):
        return None
    cams = scene.train.cameras
    kp = tracks_io.load_dycheck_keypoints(
        scene.root, scene.train_names, scene.factor, "train", cams.width, cams.height
    )
    return tracks.every_query(kp)


def load_handheld(config: ml_collections.ConfigDict) -> Dataset:
    """The hand-held iPhone-like scene (data/handheld.py) at config.data's size, with its training tracks
    as config.data.tracks says and ground-truth evaluation tracks on the moving objects."""
    d = config.data
    hc = handheld.HandheldConfig(
        num_frames=d.num_frames,
        width=d.width,
        height=d.height,
        fov_deg=d.fov_deg,
        seed=config.seed,
        background=tuple(config.render.background),
        num_tracks=int(d.num_tracks),
        num_query_frames=int(d.track_query_frames),
    )
    scene, train, held_out = handheld.make_dataset(hc)  # train.tracks: the scene's ground-truth tracks
    what = d.get("tracks", "")
    if what != "ground_truth":
        train = train.replace(tracks=None)
        if what:
            loaded = tracks_io.load_npz(what, train.num_frames, hc.width, hc.height)
            train = train.replace(tracks=tracks.subsample(loaded, int(d.num_tracks), config.seed))
    ds = Dataset(train=train, held_out=held_out, source=hc, metres_per_unit=hc.metres_per_unit)
    n_eval = int(config.eval.get("num_tracks", 0))
    if n_eval:  # other points (another seed) on the moving objects only, queried at 3 frames
        ev = dataclasses.replace(hc, track_foreground=1.0)
        queries = handheld.default_query_frames(hc.num_frames, 3)
        ds.eval_tracks = handheld.ground_truth_tracks(scene, ev, train, n_eval, queries, config.seed + 7919)
    deg, frac = d.get("camera_noise_deg", 0.0), d.get("camera_noise_frac", 0.0)
    if deg or frac:
        ds.train = camera_noise.perturb_frames(train, deg, frac, hc.radius, config.seed)
        ds.true_cameras = train.cameras
    return ds
