"""
The task families, one module each: its facts, its templates, its record generator and its answer checker
together, so that what the data says and what the checker accepts cannot drift apart. This package is the
registry: data/make_data.py builds the data from it and the evaluation scores with it. It imports nothing
from model/ (model/evaluate.py imports it), and is pure Python.

score(record, response) -> True / False, or None when the record has no known family (bring-your-own
data): every checker is tolerant to phrasing (any response template the generator uses, case, a trailing
period, extra words around the answer) and strict on the answer itself (a wrong number, a wrong city,
a missing or wrong table cell is wrong).

A non-table answer that contains "|" is wrong, whatever else it says: the pipe is legitimate only inside
a markdown table, and its leak into prose is a classic tiny-model defect that we want the score to see.

To add a family: a module with NAME, a *_record generator and check(answer, response), listed below.
"""

from data.tasks import arith, capital, fish, table, word

# record["task"] -> the family's module. The order is the order of eval.jsonl and of report columns.
REGISTRY = {m.NAME: m for m in (capital, arith, word, fish, table)}
FAMILIES = tuple(REGISTRY)


def pipes_allowed(record):
    """Whether a "|" may appear in an answer to record: only in a table (records without a family count
    as non-table)."""
    return record.get("task") == table.NAME


def has_pipe_leak(record, response):
    """A "|" in an answer that is not a table."""
    return not pipes_allowed(record) and "|" in response


def score(record, response):
    """True if response answers record right, False if not, None if the record has no known family."""
    family = REGISTRY.get(record.get("task"))
    if family is None:
        return None
    if has_pipe_leak(record, response):
        return False
    return bool(family.check(record["answer"], response))
