"""tagseg: myocardial segmentation of tagged cardiac MRI with cine-to-tagged transfer learning."""

__version__ = "0.1.0"
