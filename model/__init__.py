"""The tiny self-play sandbox: a from-scratch GPT, its sampler, tokenizer and shared training helpers."""

from model.gpt import GPT, GPTConfig
from model.sampler import generate, naive_generate

__all__ = ["GPT", "GPTConfig", "generate", "naive_generate"]
