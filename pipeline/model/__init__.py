"""The frozen model a prompt trains over: the HF backbone and tokenizer (backbone.py: hub, local path, GGUF file
(gguf.py), bitsandbytes quantisation), tiny random models for tests and smoke runs (tiny.py), ZeRO-3 in one place
(zero.py), and PromptedModel, the backbone plus one prompt method with no method-specific code (prompted.py)."""
