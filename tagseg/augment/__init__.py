"""Batch augmentation in torch for tagged MRI (the ``augment=`` config group).

Transforms work on a whole training batch where it lives (CPU or GPU), after Lightning moved it
to the device (:meth:`tagseg.data.datamodule.SliceDataModule.on_after_batch_transfer`). Each is a
small :class:`~tagseg.augment.base.BatchTransform` with a probability, ranges from config and a
family (``geometry``, ``tags``, ``noise``, ``resolution``, ``artefacts``, ``appearance``), so an
ablation can leave one family out. :class:`~tagseg.augment.compose.BatchAugment` runs them in
order with one ``torch.Generator`` seeded from ``(seed, batch count, rank)``.

Modules: base (the transform protocol, draws, the batch view), geometry, tags, acquisition,
appearance, compose. This package may use :mod:`tagseg.physics` (tags on the fly), never
:mod:`tagseg.data`.
"""
