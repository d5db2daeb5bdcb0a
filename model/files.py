"""
Reading and writing the project's files, once: the one JSONL reader (errors name the file and the line; a
log's torn last line can be tolerated), instruction records in both accepted formats, the one atomic write
(a reader never sees a half-written file, even after kill -9) and JSON through it. No torch here: the
experiment reports read runs without importing it.

Accepted records, one JSON object per line:
  {"prompt": ..., "response": ..., ["task": ..., "answer": ...]}        (our generator's format)
  {"messages": [{"role": "user", "content": ...}, {"role": "assistant", "content": ...}]}  (TRL, SPIN repo)
Records without a `task` are scored on loss and pipe metrics only.
"""

import json
import os
from pathlib import Path

from model.rundir import fault_point


class DataError(ValueError):
    """Malformed input data; the message names the file and the line."""


def _normalize(obj, where):
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if "messages" in obj:
        msgs = obj["messages"]
        if not isinstance(msgs, list) or not all(isinstance(m, dict) for m in msgs):
            raise DataError(f"{where}: 'messages' must be a list of {{'role', 'content'}} objects")
        roles = [m.get("role") for m in msgs]
        if "user" not in roles or "assistant" not in roles[roles.index("user"):]:
            raise DataError(f"{where}: 'messages' needs a user turn followed by an assistant turn")
        u = roles.index("user")
        a = roles.index("assistant", u)
        prompt, response = msgs[u].get("content"), msgs[a].get("content")
        obj = {k: v for k, v in obj.items() if k != "messages"}
    else:
        missing = [k for k in ("prompt", "response") if k not in obj]
        if missing:
            raise DataError(f"{where}: missing field(s) {missing}; need 'prompt' and 'response', or 'messages'")
        prompt, response = obj["prompt"], obj["response"]
    if not isinstance(prompt, str) or not isinstance(response, str) or not prompt:
        raise DataError(f"{where}: prompt and response must be strings, and the prompt non-empty")
    return {**obj, "prompt": prompt, "response": response}


def previous_path(path):
    """Where atomic_write(keep_previous=True) keeps the version it replaced: ckpt.pt -> ckpt.prev.pt."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def atomic_write(path, write, keep_previous=False):
    """The one atomic write: `write(f)` fills a temporary file beside `path` (opened in binary mode), then
    a rename puts it in place, so a reader never sees a half-written file, even after a kill -9. A write
    that fails (OSError: a full disk, a read-only directory) leaves `path` as it was, and no temporary file.

    keep_previous (checkpoints): the version being replaced is first renamed to previous_path(path), then
    the new one takes its place (and is synced to the disk first), so that at every instant at least one
    complete file exists: `path`, or between the two renames its previous version."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        fault_point(f"write:{path.name}")
        with open(tmp, "wb") as f:
            write(f)
            if keep_previous:
                f.flush()
                os.fsync(f.fileno())
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise
    if keep_previous and path.exists():
        os.replace(path, previous_path(path))
        fault_point(f"rotate:{path.name}")
    os.replace(tmp, path)


def write_json(path, obj):
    """A JSON file (summary.json and the like), written through the atomic write."""
    atomic_write(path, lambda f: f.write((json.dumps(obj, indent=2) + "\n").encode()))


def read_json_lines(path, torn_tail_ok=False, numbered=False):
    """The one JSONL reader: a list of the JSON values of the non-blank lines (with numbered, of
    (line number, value) pairs). A malformed line raises DataError naming file and line; with
    torn_tail_ok, an unparsable *last* line (a log cut by a crash in mid-write) is dropped instead."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    out = []
    nonblank = [(n, line) for n, line in enumerate(lines, 1) if line.strip()]
    for k, (lineno, line) in enumerate(nonblank):
        try:
            out.append((lineno, json.loads(line)) if numbered else json.loads(line))
        except json.JSONDecodeError as e:
            if torn_tail_ok and k == len(nonblank) - 1:
                break
            raise DataError(f"{path}:{lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
    return out


def read_jsonl(path):
    """Read instruction records; a malformed line raises DataError naming file and line number."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file (run `make data` to generate the default data)")
    records = [_normalize(obj, f"{path}:{n}") for n, obj in read_json_lines(path, numbered=True)]
    if not records:
        raise DataError(f"{path}: no records")
    if not any(r["response"].strip() for r in records):
        raise DataError(f"{path}: every response is empty (the runs learn from the answers and score with them)")
    return records


def write_jsonl(path, records):
    """Write one JSON object per line, atomically."""
    atomic_write(path, lambda f: f.writelines((json.dumps(r, ensure_ascii=False) + "\n").encode() for r in records))
