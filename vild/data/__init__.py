"""Data for vild: training targets, input pipelines, dataset conversion and generated worlds."""
