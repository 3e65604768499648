"""gtzan-hf: fine-tune SSAST on GTZAN and any audio classification dataset, the Hugging Face way."""

from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoModelForAudioClassification

from .models.configuration_cnn import CNNConfig
from .models.configuration_ssast import SSASTConfig
from .models.feature_extraction_ssast import SSASTFeatureExtractor
from .models.modeling_cnn import CNNForAudioClassification
from .models.modeling_ssast import SSASTForAudioClassification, SSASTForPreTraining, SSASTModel, SSASTPreTrainedModel

# Once the package is imported, saved folders load through the Auto classes without `trust_remote_code`; elsewhere
# the code saved with them (auto_map) does the same.
AutoConfig.register(SSASTConfig.model_type, SSASTConfig, exist_ok=True)
AutoConfig.register(CNNConfig.model_type, CNNConfig, exist_ok=True)
AutoModel.register(SSASTConfig, SSASTModel, exist_ok=True)
AutoModelForAudioClassification.register(SSASTConfig, SSASTForAudioClassification, exist_ok=True)
AutoModelForAudioClassification.register(CNNConfig, CNNForAudioClassification, exist_ok=True)
AutoFeatureExtractor.register(SSASTConfig, SSASTFeatureExtractor, exist_ok=True)
AutoFeatureExtractor.register(CNNConfig, SSASTFeatureExtractor, exist_ok=True)

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
