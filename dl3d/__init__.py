"""dl3d: distributed batch processing for 3D deep learning models.

The top-level package is the library layer: models, body models, fitting, data formats and codecs.
It never imports Ray; the Ray actors live in ``dl3d.workers`` and the command line in ``dl3d.jobs``.
"""

__version__ = "0.1.0"
