"""The data generator: deterministic, nested subsets, eval disjoint from train, val disjoint from both, every
reference answer checks."""

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from data.make_data import build, main, make_dataset
from data.tasks import FAMILIES, score
from data.tasks.table import TABLE_KINDS

N_TRAIN, N_EVAL, N_VAL = 3000, 320, 100
FILES = ("train.jsonl", "train_50.jsonl", "train_25.jsonl", "eval.jsonl", "val.jsonl")
ROOT = Path(__file__).resolve().parents[1]


def load(path):
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen")
    counts = make_dataset(out, seed=0, n_train=N_TRAIN, n_eval_per_task=N_EVAL, n_val_per_task=N_VAL)
    return out, counts


@pytest.fixture(scope="module")
def splits(generated):
    out, _ = generated
    return load(out / "train.jsonl"), load(out / "eval.jsonl")


@pytest.fixture(scope="module")
def val(generated):
    out, _ = generated
    return load(out / "val.jsonl")


def arith_triple(prompt):
    """(a, op, b) of an arithmetic prompt, whatever its phrasing."""
    m = re.fullmatch(r"Subtract (\d+) from (\d+)\.", prompt)
    if m:
        return int(m.group(2)), "-", int(m.group(1))
    a, b = (int(x) for x in re.findall(r"\d+", prompt))
    op = "+" if re.search(r"\+|plus|Add", prompt) else "-"
    return a, op, b


def test_files_and_counts(generated):
    out, counts = generated
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)  # no temp files left behind
    assert sum(counts["train"].values()) == N_TRAIN
    assert sum(counts["train_50"].values()) == N_TRAIN // 2
    assert sum(counts["train_25"].values()) == N_TRAIN // 4
    for task in FAMILIES:
        assert counts["eval"][task] == N_EVAL >= 300
        assert counts["val"][task] == N_VAL  # every held-out pool has room for 100 more at eval's 320
        assert counts["train"][task] > 0.1 * N_TRAIN  # roughly balanced
    assert counts["train"]["arith"] >= counts["train"]["capital"] and counts["train"]["word"] >= counts["train"]["fish"]


def test_records_have_the_schema(splits, val):
    for r in splits[0] + splits[1] + val:
        assert set(r) == {"prompt", "response", "task", "sub", "answer"}
        assert r["task"] in FAMILIES and r["prompt"] and r["response"]


def test_deterministic_by_seed(generated, tmp_path):
    out, _ = generated
    make_dataset(tmp_path / "same", seed=0, n_train=N_TRAIN, n_eval_per_task=N_EVAL, n_val_per_task=N_VAL)
    for f in FILES:
        assert (tmp_path / "same" / f).read_bytes() == (out / f).read_bytes(), f
    make_dataset(tmp_path / "other", seed=1, n_train=N_TRAIN, n_eval_per_task=N_EVAL, n_val_per_task=N_VAL)
    for f in FILES:
        assert (tmp_path / "other" / f).read_bytes() != (out / f).read_bytes(), f


def test_deterministic_across_processes(tmp_path):
    # string hashing is salted per process: the output must not depend on it (set iteration order, hash())
    outs = []
    for hashseed in ("1", "2"):
        out = tmp_path / hashseed
        env = {**os.environ, "PYTHONHASHSEED": hashseed}
        subprocess.run([sys.executable, "-m", "data.make_data", "--out", str(out), "--n_train", "400",
                        "--n_eval_per_task", "40"], cwd=ROOT, env=env, check=True, capture_output=True)
        outs.append(out)
    for f in FILES:
        assert (outs[0] / f).read_bytes() == (outs[1] / f).read_bytes(), f


def test_nested_subsets(generated):
    out, _ = generated
    full = (out / "train.jsonl").read_text().splitlines()
    half = (out / "train_50.jsonl").read_text().splitlines()
    quarter = (out / "train_25.jsonl").read_text().splitlines()
    assert (len(full), len(half), len(quarter)) == (N_TRAIN, N_TRAIN // 2, N_TRAIN // 4)
    assert half == full[: len(half)] and quarter == half[: len(quarter)]


def test_eval_prompts_never_in_train(splits):
    train, ev = splits
    train_prompts = {r["prompt"] for r in train}
    assert not [r["prompt"] for r in ev if r["prompt"] in train_prompts]
    assert len({r["prompt"] for r in ev}) == len(ev)  # nor twice in eval


def test_arith_eval_pairs_never_in_train(splits):
    train, ev = splits
    used = {arith_triple(r["prompt"]) for r in train if r["task"] == "arith"}
    for r in train:  # the sums tables show arithmetic too
        if r["sub"].startswith("sums"):
            used |= {(int(a), "+", int(b)) for a, b in (row[0].split(" + ") for row in r["answer"]["rows"])}
    eval_triples = [arith_triple(r["prompt"]) for r in ev if r["task"] == "arith"]
    assert not used & set(eval_triples)
    assert len(set(eval_triples)) == len(eval_triples)
    # the triple parsed back reproduces the answer, so the parse is right
    for r in ev + train:
        if r["task"] == "arith":
            a, op, b = arith_triple(r["prompt"])
            assert r["answer"] == (a + b if op == "+" else a - b)
    levels = {r["sub"].split("_")[1] for r in ev if r["task"] == "arith"}
    assert levels == {"1d", "2d1d", "2d2d", "3d2d", "3d3d"}
    assert any(r["answer"] < 0 for r in ev if r["task"] == "arith")


def test_word_and_table_eval_combinations_unseen(splits):
    train, ev = splits
    seen_words = {(r["answer"]["word"], r["answer"]["op"]) for r in train if r["task"] == "word"}
    # a held-out (word, "count") must not leak through a lengths table either
    for r in train:
        if r["sub"].startswith("lengths"):
            seen_words |= {(row[0], "count") for row in r["answer"]["rows"]}
    unseen = [r for r in ev if r["task"] == "word" and r["sub"].endswith("_unseen")]
    assert len(unseen) >= 100
    assert not [r for r in unseen if (r["answer"]["word"], r["answer"]["op"]) in seen_words]

    def key(r):
        return tuple(r["answer"]["header"]), tuple(row[0] for row in r["answer"]["rows"])

    train_tables = {key(r) for r in train if r["task"] == "table"}
    assert not [r for r in ev if r["task"] == "table" and key(r) in train_tables]


def test_every_reference_answer_passes_its_checker(splits, val):
    train, ev = splits
    failed = [r for r in train + ev + val if score(r, r["response"]) is not True]
    assert not failed, failed[:5]


def test_pipes_only_in_tables_and_records_short(splits, val):
    train, ev = splits
    for r in train + ev + val:
        assert "|" not in r["prompt"]
        assert ("|" in r["response"]) == (r["task"] == "table")
        assert len(r["prompt"]) + len(r["response"]) <= 300
        assert len((r["prompt"] + " " + r["response"]).split()) <= 70
        if r["task"] == "table":
            assert 2 <= len(r["answer"]["rows"]) <= 4 and len(r["answer"]["header"]) <= 3


def test_every_variant_present(splits, val):
    train, ev = splits
    for recs in (train, ev, val):
        subs = {r["sub"] for r in recs}
        assert {"forward", "reverse", "habitat", "diet", "both"} <= subs
        for op in ("reverse", "spell", "count"):
            assert any(s.startswith(op + "_") for s in subs)
        for kind in TABLE_KINDS:
            assert any(s.startswith(kind + "_") for s in subs)


def test_default_sizes():
    train, ev, va = build()
    assert len(train) == 20000 and len(ev) == 5 * 320 and len(va) == 5 * 100
    assert not {r["prompt"] for r in ev} & {r["prompt"] for r in train}
    assert not {r["prompt"] for r in va} & ({r["prompt"] for r in train} | {r["prompt"] for r in ev})


def test_cli(tmp_path, capsys):
    main(["--out", str(tmp_path), "--seed", "3", "--n_train", "200", "--n_eval_per_task", "30",
          "--n_val_per_task", "10"])
    printed = capsys.readouterr().out
    assert "eval" in printed and "train_25" in printed and "val.jsonl" in printed
    assert len(load(tmp_path / "eval.jsonl")) == 150 and len(load(tmp_path / "train_25.jsonl")) == 50
    assert len(load(tmp_path / "val.jsonl")) == 50


# ---------------------------------------------------------------------------------------------------
# The validation split: chooses settings; eval only reports


def sums_pairs(recs):
    """The (a, "+", b) triples shown in sums tables."""
    return {(int(a), "+", int(b)) for r in recs if r["sub"].startswith("sums")
            for a, b in (row[0].split(" + ") for row in r["answer"]["rows"])}


def table_key(r):
    return tuple(r["answer"]["header"]), tuple(row[0] for row in r["answer"]["rows"])


def assert_val_disjoint(train, ev, va):
    """Val never repeats a train or eval prompt, nor its own, nor a held-out unit (arithmetic triple, unseen
    word combination, table combination) that train or eval used."""
    prompts = [r["prompt"] for r in va]
    assert len(set(prompts)) == len(prompts)
    assert not set(prompts) & {r["prompt"] for r in train + ev}
    def arith(recs):
        return [arith_triple(r["prompt"]) for r in recs if r["task"] == "arith"]

    def combo(r):
        return r["answer"]["word"], r["answer"]["op"]

    val_triples = arith(va)
    assert len(set(val_triples)) == len(val_triples)
    assert not set(val_triples) & (set(arith(train)) | sums_pairs(train) | set(arith(ev)) | sums_pairs(ev))
    unseen = {combo(r) for r in va if r["task"] == "word" and r["sub"].endswith("_unseen")}
    assert not unseen & {combo(r) for r in train + ev if r["task"] == "word"}
    tables = [table_key(r) for r in va if r["task"] == "table"]
    assert len(set(tables)) == len(tables)
    assert not set(tables) & {table_key(r) for r in train + ev if r["task"] == "table"}


def test_val_disjoint_from_train_and_eval(splits, val):
    assert_val_disjoint(*splits, val)


def test_val_grouped_by_family_like_eval(splits, val):
    _, ev = splits
    for recs in (ev, val):
        tasks = [r["task"] for r in recs]
        assert tasks == sorted(tasks, key=FAMILIES.index)  # one block per family, in the registry's order
    # the same held-out rules: capital and fish in eval's held-out phrasings and proportions
    def subs(recs, task):
        return Counter(r["sub"] for r in recs if r["task"] == task)

    assert subs(val, "capital") == {"forward": 70, "reverse": 30}
    assert subs(val, "fish") == {"habitat": 40, "diet": 40, "both": 20}
    # at 320 eval prompts eval uses up the held-out word combinations and one-digit triples (documented)
    assert all(r["sub"].endswith("_newphrase") for r in val if r["task"] == "word")
    assert not any(r["sub"].endswith("_1d") for r in val if r["task"] == "arith")


def test_val_takes_eval_leftovers_first():
    # with a small eval, what it leaves of the held-out word combinations and 1d triples goes to val
    train, ev, va = build(seed=0, n_train=2000, n_eval_per_task=20, n_val_per_task=100)
    assert [sum(r["task"] == t for r in va) for t in FAMILIES] == [100] * 5
    assert_val_disjoint(train, ev, va)
    assert sum(r["sub"].endswith("_unseen") for r in va if r["task"] == "word") == 50
    assert any(r["sub"].endswith("_1d") for r in va if r["task"] == "arith")


def test_val_shrinks_where_eval_used_the_pool_up():
    # 580 fish eval prompts use every held-out habitat and diet phrasing: val gets fewer, never an eval prompt
    train, ev, va = build(seed=0, n_train=1000, n_eval_per_task=580, n_val_per_task=100)
    counts = {t: sum(r["task"] == t for r in va) for t in FAMILIES}
    assert counts["fish"] < 100 and {c for t, c in counts.items() if t != "fish"} == {100}
    assert_val_disjoint(train, ev, va)


def test_val_moves_neither_train_nor_eval(tmp_path):
    # every number measured on train/eval before val existed stays valid: adding val changes no byte
    without = build(seed=1, n_train=N_TRAIN, n_eval_per_task=N_EVAL, n_val_per_task=0)
    with_val = build(seed=1, n_train=N_TRAIN, n_eval_per_task=N_EVAL, n_val_per_task=N_VAL)
    assert without[2] == [] and len(with_val[2]) == 5 * N_VAL
    assert without[:2] == with_val[:2]
    make_dataset(tmp_path / "a", seed=1, n_train=400, n_eval_per_task=40, n_val_per_task=0)
    make_dataset(tmp_path / "b", seed=1, n_train=400, n_eval_per_task=40, n_val_per_task=30)
    for f in FILES[:-1]:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    assert load(tmp_path / "a" / "val.jsonl") == [] and len(load(tmp_path / "b" / "val.jsonl")) == 150
