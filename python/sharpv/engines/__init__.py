"""Engine integrations of SharpV (vLLM plugin, lmms-eval model); none is imported by ``sharpv``."""
