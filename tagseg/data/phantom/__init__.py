"""The digital phantom: seeded short-axis cine and tagged cardiac MRI with ground-truth labels and motion.

* :mod:`~tagseg.data.phantom.anatomy`: subject geometry as soft tissue layers, ACDC label maps.
* :mod:`~tagseg.data.phantom.motion`: Lagrangian displacement over the cycle and its Eulerian inverse.
* :mod:`~tagseg.data.phantom.imaging`: bSSFP cine and tagged GRE contrast, coil shading, Rician noise.
* :mod:`~tagseg.data.phantom.source`: :class:`PhantomSource`, the ``DatasetSource`` behind
  ``tagseg prepare data=phantom_cine`` / ``data=phantom_tagged``.
"""

from tagseg.data.phantom.source import PhantomSource

__all__ = ["PhantomSource"]
