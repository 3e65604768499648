"""Reports of runs and evaluations: metrics.json and figures, comparison tables, model cards."""
