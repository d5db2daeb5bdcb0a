"""
Instrumentation that only the tests and --debug use, kept off the production path: a checksum of the
weights (did they change? did the frozen opponent stay frozen?) and the number of GPTs alive in memory.
"""

import gc
import hashlib

from model.gpt import GPT


def param_checksum(model):
    """A hash of every parameter's bytes: tells whether weights changed at all."""
    h = hashlib.sha1()
    for p in model.parameters():
        h.update(p.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


def count_models():
    """How many GPT instances are alive: SPIN holds two (policy and frozen opponent), T-SPIN one.
    `type(o) is GPT`, not isinstance: isinstance would ask some of torch's lazy module objects for their
    __class__ and print a deprecation warning in the middle of the run."""
    return sum(type(o) is GPT for o in gc.get_objects())
