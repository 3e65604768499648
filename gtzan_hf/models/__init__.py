"""The model layer: what a model is. The Hub-bound files (`configuration_*`, `modeling_*`, `feature_extraction_*`,
which travel with saved folders as remote code), the registry of model types, the resolver of
`model_name_or_path`, checkpoint conversion and the released SSAST checkpoints by name. It imports no data,
training or serving code."""
