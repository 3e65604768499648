"""gtzan-hf: fine-tune SSAST on GTZAN and any audio classification dataset, the Hugging Face way."""
