"""The tiny self-play sandbox: a from-scratch GPT, its sampler, tokenizer and shared training helpers.

`from model import GPT` works, but importing the package imports nothing: modules without torch (files,
log, stats) stay light for the experiment reports."""

_EXPORTS = {"GPT": "model.gpt", "GPTConfig": "model.gpt", "generate": "model.sampler",
            "naive_generate": "model.sampler"}
__all__ = list(_EXPORTS)


def __getattr__(name):  # PEP 562: the first `from model import GPT` imports model.gpt, and torch with it
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'model' has no attribute {name!r}")
