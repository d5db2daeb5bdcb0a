"""The one chat template, and reading bring-your-own JSONL with errors that name file and line."""

import json

import pytest

from model.data import encode_records, format_prompt, format_response
from model.files import DataError, read_jsonl
from model.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def tok():
    text = ["What is 2 plus 3? It is 5.", "The capital of France is Paris.", "Say hello to the fish in the river."]
    return Tokenizer.train(text * 20, vocab_size=280)


def test_template_wraps_the_prompt_in_role_tokens(tok):
    ids = format_prompt(tok, "What is 2 plus 3?")
    assert ids[0] == tok.user_id and ids[-1] == tok.assistant_id
    assert tok.decode(ids[1:-1]) == "What is 2 plus 3?"
    assert format_response(tok, "It is 5.")[-1] == tok.eos_id


def test_special_strings_in_user_text_stay_plain_text(tok):
    ids = format_prompt(tok, "say <|end|> now")
    assert tok.eos_id not in ids and ids.count(tok.assistant_id) == 1


def test_all_scripts_share_the_one_template():
    """No script builds a prompt by hand: they all go through model.data.format_prompt."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for script in ["train_sft.py", "train_spin.py", "train_tspin.py", "model/evaluate.py", "model/selfplay.py"]:
        text = (root / script).read_text()  # a missing file fails the test: the list must follow the code
        assert "user_id" not in text and "<|user|>" not in text, f"{script} formats prompts by hand"


def test_encode_records_keeps_answers_inside_the_context(tok):
    recs = [{"prompt": "What is 2 plus 3?", "response": "It is 5. " * 40}]
    (p,), (r,) = encode_records(tok, recs, block_size=32)
    assert len(p) + len(r) == 33


def write(tmp_path, lines):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_read_prompt_response_and_messages(tmp_path):
    path = write(tmp_path, [
        json.dumps({"prompt": "hi", "response": "hello", "task": "x"}),
        json.dumps({"messages": [{"role": "system", "content": "be nice"}, {"role": "user", "content": "q"},
                                 {"role": "assistant", "content": "a"}]}),
    ])
    recs = read_jsonl(path)
    assert recs[0] == {"prompt": "hi", "response": "hello", "task": "x"}
    assert recs[1]["prompt"] == "q" and recs[1]["response"] == "a" and "task" not in recs[1]


@pytest.mark.parametrize("bad,why", [
    ('{"prompt": "hi", "response": ', "invalid JSON"),
    ('{"prompt": "hi"}', "missing field"),
    ('{"messages": [{"role": "assistant", "content": "a"}]}', "user turn"),
    ('[1, 2]', "JSON object"),
    ('{"prompt": 3, "response": "x"}', "strings"),
])
def test_malformed_line_names_file_and_line(tmp_path, bad, why):
    path = write(tmp_path, [json.dumps({"prompt": "a", "response": "b"}), bad])
    with pytest.raises(DataError, match=why) as e:
        read_jsonl(path)
    assert f"{path}:2" in str(e.value)


def test_instruction_template_is_plain_text_and_named(tok):
    """--template instruction: the Alpaca-style text the T-SPIN paper queried its chat-tuned theta_0 with;
    no role tokens, the prompt inside, the answer after '### Response:'. An unknown name is an error."""
    ids = format_prompt(tok, "What is 2 plus 3?", "instruction")
    assert tok.user_id not in ids and tok.assistant_id not in ids
    assert tok.decode(ids) == "### Instruction:\nWhat is 2 plus 3?\n\n### Response:\n"
    assert ids != format_prompt(tok, "What is 2 plus 3?")
    with pytest.raises(ValueError, match="template"):
        format_prompt(tok, "hi", "alpaca")
