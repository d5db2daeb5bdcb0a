"""Tests for model/tokenizer.py: a BPE trained on a small synthetic corpus, encoded by tiktoken."""

import json
import random
import socket

import pytest

from model.tokenizer import SPECIAL_TOKENS, Tokenizer, main

NAMES = ["Alice", "Bob", "Carol", "Dave", "Eve"]
THINGS = ["apples", "books", "coins", "pencils", "marbles"]


def make_corpus(n=1500, seed=0):
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        a, b = rng.randrange(100), rng.randrange(100)
        name, thing = rng.choice(NAMES), rng.choice(THINGS)
        texts.append(f"What is {a} + {b}? {name} has {a} {thing}.")
        texts.append(f"{a} + {b} = {a + b}. The answer is {a + b}.\n| {name} | {thing} |")
    return texts


def random_strings(n, seed):
    """Varied held-out text: corpus words in odd places, Unicode, whitespace runs, contractions."""
    rng = random.Random(seed)
    alphabet = list("abcdefghijklmnopqrstuvwxyzABCXYZ0123456789 .,!?'-|:;()<>=+") + [
        "  ", "\n", "\n\n", "\t", "\r\n", "é", "e\u0301", "ß", "😀", "👍🏽", "中文", "日本語", "'s", "'LL",
        " the", " answer", "The", " apples", "Bob", " 123", "<|end|>", "<|user|>", "\u00a0", "ﬁ",
    ]
    return ["".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40))) for _ in range(n)]


UNICODE_SAMPLES = [
    "",
    "hello world",
    "The answer is 42.",
    "emoji 😀🎉👍🏽 and family 👨‍👩‍👧",
    "中文字符和日本語のテキスト",
    "combining: e\u0301 a\u0300 n\u0303 vs é à ñ",
    "tabs\tand\nnewlines\r\n\n  trailing   ",
    "| a | b |\n|---|---|\n| 1 | 2 |",
    "numbers 1234567890 3.14159 -17 1e10",
    "Ünïcödé Ελληνικά русский عربى עברית",
    "   ",
    "\n",
    "zzqxj never-seen-before wörds",
    "\x00\x01 control \x7f",
]


@pytest.fixture(scope="module")
def corpus():
    return make_corpus()


@pytest.fixture(scope="module")
def tok(corpus):
    return Tokenizer.train(corpus, vocab_size=360)


def test_vocab_size_exact_and_specials_last(tok):
    assert tok.vocab_size == 360
    assert len(tok.mergeable_ranks) == 356
    assert sorted(tok.mergeable_ranks.values()) == list(range(356))
    assert len(set(tok.mergeable_ranks)) == 356  # every token's bytes are unique
    assert tok.special_tokens == {s: 356 + i for i, s in enumerate(SPECIAL_TOKENS)}
    assert (tok.user_id, tok.assistant_id, tok.eos_id, tok.pad_id) == (356, 357, 358, 359)
    assert tok.decode([tok.user_id, tok.assistant_id, tok.eos_id, tok.pad_id]) == "".join(SPECIAL_TOKENS)
    assert all(tok.mergeable_ranks[bytes([i])] == i for i in range(256))


def test_training_is_deterministic(tok, corpus):
    again = Tokenizer.train(corpus, vocab_size=360)
    assert again.mergeable_ranks == tok.mergeable_ranks
    assert again.sha256 == tok.sha256


def test_vocab_too_small_or_corpus_too_small():
    with pytest.raises(ValueError, match="at least 260"):
        Tokenizer.train(["abc"], vocab_size=259)
    with pytest.raises(ValueError, match="merges"):
        Tokenizer.train(["ab ab"], vocab_size=300)


@pytest.mark.parametrize("text", UNICODE_SAMPLES)
def test_round_trip_unicode(tok, text):
    ids = tok.encode(text)
    assert all(0 <= i < tok.vocab_size - len(SPECIAL_TOKENS) for i in ids)
    assert tok.decode(ids) == text


def test_round_trip_random_held_out(tok):
    texts = random_strings(300, seed=1)
    assert [tok.decode(ids) for ids in tok.encode_batch(texts)] == texts


def test_tiktoken_matches_reference_encoder(tok, corpus):
    texts = random_strings(400, seed=2) + UNICODE_SAMPLES + make_corpus(50, seed=99)
    for text in texts:
        assert tok.encode(text) == tok.reference_encode(text), repr(text)
    assert tok.encode_batch(texts) == [tok.encode(t) for t in texts]


def test_reference_uses_rank_of_concatenated_bytes():
    # Hand-built vocabularies where "apply the merges in training order" would be wrong.
    ranks = {bytes([i]): i for i in range(256)}
    for t in (b"ab", b"bc", b"abc"):  # "abc" was trained as a + bc ...
        ranks[t] = len(ranks)
    t = Tokenizer(ranks)
    # ... but in "abcx", ab merges first, then ab + c is the token "abc" (rank 258) all the same.
    assert t.encode("abcx") == t.reference_encode("abcx") == [258, ord("x")]

    ranks = {bytes([i]): i for i in range(256)}
    for t in (b"bc", b"ab", b"cd", b"abcd"):
        ranks[t] = len(ranks)
    t = Tokenizer(ranks)
    # a whole chunk that is a token is that token, although BPE from bytes would stop at a|bc|d
    assert t.encode("abcd") == t.reference_encode("abcd") == [259]
    assert t.encode("abcde") == t.reference_encode("abcde") == [97, 256, 100, 101]


def test_special_strings_in_text_are_plain_text(tok):
    text = "<|user|>hi<|assistant|>there<|end|><|pad|>"
    ids = tok.encode(text)
    assert not set(ids) & set(tok.special_tokens.values())
    assert tok.decode(ids) == text
    assert ids == tok.reference_encode(text)
    assert not set(tok.encode_batch([text])[0]) & set(tok.special_tokens.values())


def test_frequent_words_are_single_tokens(tok):
    for word in [" answer", " apples", " is", "What", " The", " has"]:
        assert len(tok.encode(word)) == 1, (word, tok.encode(word))
    assert len(tok.encode("What is 12 + 7? The answer is 19.")) <= 14


def test_save_load_round_trip(tok, tmp_path):
    tok.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokenizer.json", "tokenizer.tiktoken"]
    config = json.loads((tmp_path / "tokenizer.json").read_text())
    assert config["vocab_size"] == 360 and config["special_tokens"]["<|end|>"] == tok.eos_id
    first = (tmp_path / "tokenizer.tiktoken").read_text().splitlines()[0]
    assert first == "AA== 0"  # tiktoken's format: base64 of the bytes, a space, the rank
    loaded = Tokenizer.load(tmp_path)
    assert loaded.sha256 == tok.sha256
    assert loaded.mergeable_ranks == tok.mergeable_ranks and loaded.special_tokens == tok.special_tokens
    texts = random_strings(100, seed=3) + UNICODE_SAMPLES
    assert loaded.encode_batch(texts) == tok.encode_batch(texts)


def test_changed_file_changes_hash(tok, tmp_path):
    tok.save(tmp_path)
    path = tmp_path / "tokenizer.tiktoken"
    lines = path.read_text().splitlines()
    (b1, r1), (b2, r2) = lines[-1].split(), lines[-2].split()
    lines[-1], lines[-2] = f"{b1} {r2}", f"{b2} {r1}"  # swap the ranks of the last two merges
    path.write_text("\n".join(lines) + "\n")
    assert Tokenizer.load(tmp_path).sha256 != tok.sha256


def test_missing_or_corrupt_files_name_the_path(tok, tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer.tiktoken"):
        Tokenizer.load(tmp_path)
    tok.save(tmp_path)
    path = tmp_path / "tokenizer.tiktoken"
    path.write_text(path.read_text() + "not-base64!! 999\n")
    with pytest.raises(ValueError, match=r"tokenizer\.tiktoken, line 357"):
        Tokenizer.load(tmp_path)
    tok.save(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"tokenizer\.json"):
        Tokenizer.load(tmp_path)


def test_no_network(monkeypatch, tmp_path):
    def refuse(*args, **kwargs):
        raise AssertionError("the tokenizer tried to use the network")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    t = Tokenizer.train(make_corpus(200, seed=5), vocab_size=300)
    t.save(tmp_path)
    loaded = Tokenizer.load(tmp_path)
    assert loaded.decode(loaded.encode("Bob has 3 books.")) == "Bob has 3 books."


def test_cli(tmp_path, capsys):
    data = tmp_path / "train.jsonl"
    rows = [{"prompt": f"What is {i} + 1?", "response": f"The answer is {i + 1}.", "task": "add", "answer": "x"}
            for i in range(200)]
    rows.append({"messages": [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello"}]})
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    tok = main(["--train", str(data), "--out", str(tmp_path / "tok"), "--vocab_size", "280"])
    out = capsys.readouterr().out
    assert "vocab size 280" in out and "20 merges" in out and "tokens per record" in out
    assert Tokenizer.load(tmp_path / "tok").sha256 == tok.sha256

    data.write_text(json.dumps(rows[0]) + "\n{broken\n")
    with pytest.raises(SystemExit, match=r"train\.jsonl:2"):
        main(["--train", str(data), "--out", str(tmp_path / "tok2")])
