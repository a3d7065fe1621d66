"""File formats: checkpoints, safetensors, PyTorch's zip files, Hugging Face directories."""
