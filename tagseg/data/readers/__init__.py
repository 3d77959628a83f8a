"""Raw-dataset readers: each a :class:`~tagseg.data.records.DatasetSource` built from ``conf/data/<name>.yaml``.

Every reader yields slices in one orientation (rows = image y, columns = image x; NIfTI (x, y)
volumes are transposed, DICOM pixel arrays are used as they are), labels in the ACDC convention
(0 bg, 1 RV, 2 MYO, 3 LV), 0-based frames and (row, col) spacing in mm from the file headers.
"""
