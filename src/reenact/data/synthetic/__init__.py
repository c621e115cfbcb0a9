"""Synthetic talking heads with exact ground truth: the project's embedded default dataset.

Every identity, clip trajectory and frame is a pure function of ``(seed, identity index, clip index)``:
the same arguments give byte-identical frames and annotations on any machine with the same numpy/cv2.

* **Identities** (:func:`sample_identity`) draw :class:`~reenact.face.model3d.FaceModel3D` identity
  coefficients (``N(0, 1)`` clipped to ±2.5), a skin tone, a hair colour/style/volume/hairline, iris,
  brow, lip and clothing colours, a light direction and a background (two-colour gradient with an
  optional stripe, blob or check pattern). Any number of identities can be drawn.
* **Trajectories** (:func:`sample_trajectory`) are smooth but really move: pose = a per-clip base pose
  plus one large oscillation per axis (a head turn through about ±25° yaw within a 64-frame clip, nods,
  tilts; :data:`_POSE_SWING`, :data:`_POSE_RATE`) and a small jitter, clipped to yaw ±30°, pitch ±20°,
  roll ±15° (:data:`POSE_LIMITS`); translation (±:data:`TRANSLATION_LIMIT`) and scale
  (:data:`SCALE_RANGE`) drift; ``jaw_open`` follows a syllable train at 3.5-7 syllables per second
  with pauses, ``lip_pucker`` rounds some syllables, blinks are 150-300 ms events (~0.35/s, sometimes
  a wink), smiles and brow movements drift slowly or come as short events.
* **Rendering** (:func:`render_video`) paints each frame with numpy + OpenCV at ``supersample`` times
  the output size and area-downsamples it: background, torso and neck, hair behind the head, ears,
  the head (skull and face silhouettes, Lambert shading from ray-cast ellipsoids lit by the identity's
  light), then eyes, brows, a faceted nose and the mouth in back-to-front depth order, soft
  ambient-occlusion shadows (eye sockets, nose sides, under the nose, lip and chin, nasolabial folds)
  and the front hair on top. All geometry is the 3D model's landmarks (plus a few auxiliary points
  attached to them) projected with its weak-perspective camera, so the ground-truth landmarks are
  exactly the ones the features are drawn from.

Detection check (the renders must read as faces to a real face detector), measured with
:func:`measure_dlib` (60 identities x 10 frames spread over 32-frame clips whose poses cover the whole
range; dlib's HOG ``get_frontal_face_detector()`` with upsample 1, then its 68-point predictor)::

    python -c "from reenact.data.synthetic import measure_dlib; print(measure_dlib(size=256))"

=========================== ========= ============================ ===============================
rendered at                 detected  mean 68-point error (256 px)  NME (inter-ocular distance)
=========================== ========= ============================ ===============================
256 px                      600 / 600 2.26 px                       5.6%
128 px, upsampled to 256    600 / 600 2.48 px                       6.1%
64 px, upsampled to 256     300 / 300 3.05 px                       7.4%
=========================== ========= ============================ ===============================

Dataset layout written by :func:`generate_dataset` (FOMM style)::

    root/train/id0000#clip00.mp4        (or a frame folder root/train/id0000#clip00/0000.png ...)
    root/test/id0016#clip00.mp4         (identities are disjoint between train and test)
    root/annotations/train/id0000#clip00.npz
    root/annotations/README.md
    root/meta.json                      (written last and atomically: marks a complete dataset)

Every annotation ``.npz`` holds (F frames, E expressions, I identity components):

* ``landmarks`` float32 ``[F, 68, 2]``: iBUG 68 landmarks in pixels of the written frames, (x, y),
  pixel centres at integer coordinates (the image spans ``[-0.5, size - 0.5]``);
* ``pose`` float32 ``[F, 3]``: yaw, pitch, roll in degrees (conventions: :mod:`reenact.face.model3d`);
* ``translation`` float32 ``[F, 2]`` and ``scale`` float32 ``[F]``: the weak-perspective camera in
  normalized image units (``[-1, 1]`` across the image);
* ``expression`` float32 ``[F, E]`` in the order of ``meta.json["expression_names"]``;
* ``identity_coeffs`` float32 ``[I]`` and ``identity``: a 0-d string array with the identity name.

The default dataset (:func:`ensure_default_dataset`) is 128 px, 40 videos (32 train + 8 test, i.e.
16 + 4 identities with 2 clips each), 64 frames each, seed 0, H.264 (about 4 MB); it builds in about
20 s on one CPU core (rendering ~5 ms per 128 px frame) and is cached under ``$REENACT_CACHE`` (default
``~/.cache/reenact``).
"""

from reenact.data.synthetic.dataset import (
    ANNOTATION_KEYS,
    ANNOTATIONS_README,
    CONVENTIONS,
    DEFAULT_ARGS,
    GENERATOR_VERSION,
    cache_dir,
    default_dataset_root,
    ensure_default_dataset,
    generate_dataset,
)
from reenact.data.synthetic.detection import dlib_detection_rate, measure_dlib
from reenact.data.synthetic.identity import Identity, face_model, identity_name, sample_identity
from reenact.data.synthetic.renderer import Renderer, identity_dict, render_video
from reenact.data.synthetic.trajectory import POSE_LIMITS, SCALE_RANGE, TRANSLATION_LIMIT, sample_trajectory

__all__ = [
    "ANNOTATIONS_README", "ANNOTATION_KEYS", "CONVENTIONS", "DEFAULT_ARGS", "GENERATOR_VERSION", "POSE_LIMITS",
    "SCALE_RANGE", "TRANSLATION_LIMIT", "Identity", "Renderer", "cache_dir", "default_dataset_root",
    "dlib_detection_rate", "ensure_default_dataset", "face_model", "generate_dataset", "identity_dict",
    "identity_name", "measure_dlib", "render_video", "sample_identity", "sample_trajectory",
]
