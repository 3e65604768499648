"""gtzan-hf: fine-tune SSAST on GTZAN and any audio classification dataset, the Hugging Face way.

The package is laid out in layers, lower ones never importing higher ones: `models` (what a model is) <- `inference`
(windows, votes, the prediction loop) <- `data` <- `training` <- `reports` <- `commands`, with `serving` (the Space)
beside `data` and `training`, and `recipes` plugging named recipes' quirks into the registries. Importing the package
loads the model layer only.
"""

from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModel,
    AutoModelForAudioClassification,
    AutoModelForPreTraining,
)

from .models.configuration_cnn import CNNConfig
from .models.configuration_ssast import SSASTConfig
from .models.feature_extraction_ssast import SSASTFeatureExtractor
from .models.modeling_cnn import CNNForAudioClassification
from .models.modeling_ssast import SSASTForAudioClassification, SSASTForPreTraining, SSASTModel, SSASTPreTrainedModel
from .models.registry import MODEL_TYPES

# Once the package is imported, saved folders load through the Auto classes without `trust_remote_code`; elsewhere
# the code saved with them (auto_map) does the same.
for _entry in MODEL_TYPES:
    AutoConfig.register(_entry.config_model_type, _entry.config_class, exist_ok=True)
    AutoModelForAudioClassification.register(_entry.config_class, _entry.classifier_class, exist_ok=True)
    AutoFeatureExtractor.register(_entry.config_class, _entry.feature_extractor_class, exist_ok=True)
    if _entry.base_model_class is not None:
        AutoModel.register(_entry.config_class, _entry.base_model_class, exist_ok=True)
    if _entry.pretraining_class is not None:
        AutoModelForPreTraining.register(_entry.config_class, _entry.pretraining_class, exist_ok=True)

del _entry

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
