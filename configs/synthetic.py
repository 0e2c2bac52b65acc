"""Default config: reconstruct the embedded synthetic dynamic scene (no download, runs anywhere on CPU).

python -m experiments.run --config=configs/synthetic.py [--config.train.num_steps=3000] [--workdir=runs/x]
"""

import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0  # PRNG seed: scene content, initialisation and the training frame order
    c.resume = True  # continue from the latest checkpoint in the workdir, if any

    c.data = ml_collections.ConfigDict()
    c.data.source = "synthetic"  # data source (only the procedural scene so far)
    c.data.scene = "default"  # default | handheld (the iPhone-like scene: configs/handheld.py sets it up)
    c.data.num_frames = 24  # time steps T (one training view per step)
    c.data.width = 128  # image width in pixels
    c.data.height = 96  # image height in pixels
    c.data.fov_deg = 55.0  # horizontal field of view of every camera
    c.data.num_background = 6000  # Gaussians of the ground-truth static background
    c.data.num_per_object = 1200  # Gaussians per ground-truth dynamic object
    c.data.train_arc_deg = 50.0  # azimuth span swept by the training camera
    c.data.spin_deg = 90.0  # total turn of the spinning cube over the clip (180: harder, see README)
    c.data.bounces = 2  # bounces of the ball over the clip
    c.data.eval_azimuths_deg = (-12.0, 12.0)  # static held-out cameras (inside the training span)
    # Known camera errors on the training frames (all but the first; the images are unchanged), to test
    # train.camera_refine: a rotation of this many degrees about a random axis, and a shift of the centre by
    # this fraction of the camera-to-subject distance in a random direction (any4d_jax/data/camera_noise.py).
    c.data.camera_noise_deg = 0.0
    c.data.camera_noise_frac = 0.0
    # Long-range 2D point tracks of the training video (data/tracks.py): "" = none; "ground_truth" = exact
    # tracks of scene points (this scene knows every point's motion); or the path of a tracks .npz
    # (data/tracks_io.py: any tracker's output). With tracks the run adds a track loss (train.track_weight),
    # initialises the motion bases from them (motion.init_from_tracks) and picks the canonical frame where
    # most are visible (motion.canonical_frame = -1).
    c.data.tracks = ""
    c.data.num_tracks = 1024  # at most this many tracks are used (a seeded subset)
    c.data.track_query_frames = 4  # ground_truth: query frames spread over the clip (tracks start there)

    c.model = ml_collections.ConfigDict()
    c.model.capacity = 10000  # Gaussian slots (fixed shape; density control fills free slots)
    c.model.sh_degree = 0  # spherical-harmonic degree of the colours (1+ overfits the narrow training arc)
    c.model.init_stride = 2  # pixel stride of the canonical frame's depth unprojection (static pixels)
    c.model.init_stride_dynamic = 1  # pixel stride on the canonical frame's foreground (dynamic) pixels
    c.model.init_stride_static = 6  # pixel stride for static pixels of the other frames
    c.model.init_fraction = 0.5  # at most this fraction of the capacity is used at initialisation
    c.model.init_opacity = 0.5  # initial opacity of every Gaussian

    c.motion = ml_collections.ConfigDict()
    c.motion.preset = "hybrid"  # hybrid | generators_only | learnable_only | static (baselines)
    c.motion.num_generator_channels = 2  # C: 6 C generator bases (hybrid preset)
    c.motion.num_learnable_bases = 8  # B_l learnable SE(3) bases (hybrid preset)
    c.motion.time_basis = "dct"  # per_frame | dct | bspline (uniform cubic B-splines, local in time)
    c.motion.num_time_coeffs = 10  # DCT terms (or B-spline control points, >= 4) per trajectory
    # t0, where motion is the identity; -1 = automatic: the first frame when train.camera_refine (its camera
    # is the one held exact), else where most training tracks are visible (Shape of Motion's choice) when
    # there are tracks, else the middle frame.
    c.motion.canonical_frame = -1
    c.motion.init_weight = 1.0  # scale of the k-means one-hot initial weights on the learnable bases
    c.motion.init_generator_weight = 0.0  # the same on the generator bases (0: channels shared by clusters
    # would couple unrelated objects at the start; the weights grow where the generators help)
    # With 3D tracks (given, or 2D tracks lifted by depth): bases from k-means on the tracks' velocities,
    # each fitted to its cluster's rigid motion, and weights from the nearest track (model/track_init.py).
    c.motion.init_from_tracks = True
    # Gaussians that start static (zero motion weights: the initialisation's static points, and the children
    # density control gives them) get no weight updates, so they never move (Shape of Motion keeps a separate
    # static set for the same reason). False: every weight learns, and the background drifts.
    c.motion.static_stays_static = True

    c.train = ml_collections.ConfigDict()
    c.train.num_steps = 1200  # optimisation steps (one random training frame each; 1500: +0.5 dB, +1 min)
    c.train.time_ramp_steps = 600  # frames come from a window growing to the whole clip over these steps
    c.train.ssim_lambda = 0.2  # photometric = (1 - l) L1 + l (1 - SSIM)
    c.train.depth_weight = 0.05  # L1 on z-depth where the data has depth (0 disables)
    c.train.foreground_weight = 0.0  # extra L1 on foreground-mask pixels (data with masks; 0 disables)
    c.train.accel_weight = 0.1  # temporal acceleration of basis trajectories
    c.train.rigidity_weight = 2.0  # local rigidity over k nearest neighbours
    c.train.rigidity_k = 8  # neighbours for the rigidity loss (refreshed at each densification)
    c.train.sparsity_weight = 0.05  # L1 on motion weights
    # Learn a small SE(3) correction of every training camera but the first (model/camera_refine.py), for
    # videos that follow their trajectory only roughly. None = auto: on for videos from a diffusers generator,
    # off where the cameras are exact (this scene, iPhone's calibration, the warp and synthetic generators).
    c.train.camera_refine = config_dict.placeholder(bool)
    c.train.camera_weight = 1.0  # penalty on the corrections' size (rad^2 + (shift / scene extent)^2)
    c.train.camera_start = 0  # corrections learn from this step on (measured: 0 >= 100 > 600)
    # The corrections learn from the static Gaussians only (all motion weights 0: motion.static_stays_static
    # keeps them so): a moving object whose motion is still wrong is no evidence of where the camera is.
    c.train.camera_static_only = True
    # 2D track loss (data with tracks only): each track's point, blended from the Gaussians nearest its query
    # point, projected into every frame and compared with the track, confidence-weighted, in units of the
    # image's larger side (train/losses.track_loss). 0 disables.
    c.train.track_weight = 1.0
    c.train.track_neighbours = 4  # Gaussians blended per track (model/track_anchors.py)
    c.train.densify_from = 200  # first step of adaptive density control
    c.train.densify_until = 1000  # last step of adaptive density control
    c.train.densify_every = 100  # steps between density-control rounds
    c.train.densify_grad_threshold = 2e-4  # mean screen-space gradient (NDC) that triggers clone/split
    c.train.prune_opacity = 0.005  # prune Gaussians fainter than this
    c.train.log_every = 25  # steps between progress updates (and non-finite checks)
    c.train.checkpoint_every = 500  # steps between orbax checkpoints (and one at the end)
    c.train.keep_checkpoints = 2  # checkpoints kept on disk
    c.train.stop_after = -1  # stop early after this step (simulates preemption; -1 = never)
    c.train.lr = ml_collections.ConfigDict()
    c.train.lr.means = 1.6e-4  # x scene extent, decays x0.01 over the run
    c.train.lr.quats = 1e-3  # rotations
    c.train.lr.scales = 5e-3  # log scales
    c.train.lr.opacities = 5e-2  # opacity logits
    c.train.lr.colors = 2.5e-3  # SH coefficients
    c.train.lr.motion_trajectories = 5e-3  # basis trajectory coefficients
    c.train.lr.motion_weights = 1e-2  # per-Gaussian blend weights
    c.train.lr.motion_decay = 0.1  # both motion rates decay exponentially to this factor (1: constant)
    # Camera corrections (train.camera_refine), decaying like the motion rates. Row-sparse Adam: a frame's
    # correction steps only when its frame is drawn, so this is a rate per visit.
    c.train.lr.camera = 1.5e-2

    c.render = ml_collections.ConfigDict()
    c.render.background = (1.0, 1.0, 1.0)  # RGB behind everything (data and model)
    # Per-tile cap: None = none (the compositor's work follows the real pairs); an int keeps that many nearest
    # Gaussians per 16x16 tile and counts the rest as dropped pairs (a quality loss).
    c.render.tile_capacity = ml_collections.config_dict.placeholder(int)
    # Tile-pair budget (a static shape): None = 8 per Gaussian slot. It is an initial size when grow_pairs.
    c.render.max_pairs = ml_collections.config_dict.placeholder(int)
    # A step whose render wants more pairs than the budget is undone, the budget grows to the next power of
    # two >= 1.25x (one recompile, logged) and the step is redone: nothing is dropped. False: a hard budget
    # (overflow is dropped farthest-first and counted in train_metrics.jsonl and metrics.json).
    c.render.grow_pairs = True
    # Compositing stage: auto (the XLA compositor, until the Pallas kernels are measured on a GPU) | xla |
    # pallas (Triton kernels on a GPU, one program per tile; on CPU interpreted: exact but slow).
    c.render.backend = "auto"

    c.eval = ml_collections.ConfigDict()
    c.eval.fps = 12  # frame rate of the videos
    c.eval.novel_views = 48  # frames of the novel orbit video
    c.eval.novel_arc_deg = 80.0  # azimuth span of the novel orbit (wider than training)
    c.eval.write_ply = True  # write the Gaussians of every frame as 3DGS PLY
    c.eval.num_tracks = 256  # ground-truth tracks scored for 3D / 2D tracking (not the training tracks)

    # python -m experiments.ablate: every (C, B_l) combination trained at once by one vmapped train step,
    # as active-basis masks over the maximal allocation (motion.num_* are raised to the largest counts).
    c.ablation = ml_collections.ConfigDict()
    c.ablation.generator_channels = "0,1,2"  # generator channel counts C to compare (comma-separated)
    c.ablation.learnable_bases = "0,4,8,16"  # learnable basis counts B_l to compare (comma-separated)
    c.ablation.num_seeds = 1  # runs per combination, seeds seed, seed+1, ... (the table gives the mean)
    c.ablation.step_scale = 0.25  # fraction of train.num_steps (and time ramp, density control) per variant

    # Data-parallel training: a batch of training frames split over a jax.sharding Mesh, parameters
    # replicated, gradients reduced by the compiler. CPU: XLA_FLAGS=--xla_force_host_platform_device_count=N.
    c.parallel = ml_collections.ConfigDict()
    c.parallel.devices = 1  # devices to train on (jax.devices()[:N]); 1 = the single-device path, unchanged
    c.parallel.frames_per_device = 1  # training frames each device renders per step (batch = devices x this)
    c.parallel.distributed = False  # multi-host: jax.distributed.initialize() before anything (see README)
    return c
