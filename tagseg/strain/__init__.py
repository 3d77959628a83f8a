"""Myocardial strain from tagged cine series: trackers, the myocardial mesh, strain, AHA segments, the output schema."""
