"""Quality control of predicted masks: signals without ground truth, the predicted-Dice model and its
evaluation (see ``docs/stages.md``, section ``tagseg qc``)."""
