"""tagseg's conventions, in one place: labels, image orientation, intensity ranges.

Everything inside tagseg follows these; readers convert at the edge, writers convert back.

* **labels** (ACDC): uint8 masks with 0 background, 1 right ventricle, 2 myocardium, 3 left
  ventricular blood pool (a tagged set may carry the myocardium only).
* **orientation**: see :data:`ORIENTATION`.
* **intensities**: slice stores (and every segmentation model) hold images in [0, 1]; the
  segmenter normalises them with :data:`NORM_MEAN` / :data:`NORM_STD`; the CycleGAN runs on
  :data:`GAN_RANGE` (conversion in :mod:`tagseg.data.intensity`).
* **spacing**: ``spacing_mm`` is (row, col) in millimetres; frames are 0-based.
"""

from __future__ import annotations

#: the ACDC label convention used everywhere inside tagseg
BACKGROUND, RV, MYO, LV = 0, 1, 2, 3
LABELS = (BACKGROUND, RV, MYO, LV)

#: intensity normalisation of [0, 1] images before the segmenter (ImageNet grey mean / std)
NORM_MEAN = 0.456
NORM_STD = 0.224

#: the store intensity range and the CycleGAN's (its generators end in ``tanh``)
STORE_RANGE = (0.0, 1.0)
GAN_RANGE = (-1.0, 1.0)

#: the one image orientation inside tagseg
ORIENTATION = (
    "row 0 at the top of the displayed image, column 0 at the left: array axis 0 = rows (image y), "
    "axis 1 = columns (image x), as matplotlib.pyplot.imshow shows it; NIfTI (x, y) volumes are "
    "transposed so that rows = y, columns = x"
)

__all__ = [
    "BACKGROUND",
    "GAN_RANGE",
    "LABELS",
    "LV",
    "MYO",
    "NORM_MEAN",
    "NORM_STD",
    "ORIENTATION",
    "RV",
    "STORE_RANGE",
]
