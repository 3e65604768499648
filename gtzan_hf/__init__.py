"""gtzan-hf: fine-tune SSAST on GTZAN and any audio classification dataset, the Hugging Face way."""

from .configuration_cnn import CNNConfig
from .configuration_ssast import SSASTConfig
from .feature_extraction_ssast import SSASTFeatureExtractor
from .modeling_cnn import CNNForAudioClassification
from .modeling_ssast import SSASTForAudioClassification, SSASTForPreTraining, SSASTModel, SSASTPreTrainedModel

__all__ = [
    "CNNConfig",
    "CNNForAudioClassification",
    "SSASTConfig",
    "SSASTFeatureExtractor",
    "SSASTForAudioClassification",
    "SSASTForPreTraining",
    "SSASTModel",
    "SSASTPreTrainedModel",
]
