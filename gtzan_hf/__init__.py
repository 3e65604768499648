"""gtzan-hf: fine-tune SSAST on GTZAN and any audio classification dataset, the Hugging Face way."""

from .feature_extraction_ssast import SSASTFeatureExtractor

__all__ = ["SSASTFeatureExtractor"]
