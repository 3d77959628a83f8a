"""tagseg's Optuna sweeper as a Hydra plugin (Hydra only instantiates sweepers from ``hydra_plugins``);
the implementation is :mod:`tagseg.pipeline.optuna_sweeper`."""
