# Two commands on a fresh machine: `make tspin` (the whole story) and `make test`.
# Every target sets up .venv itself; a second run of the set-up is a no-op.
# SMOKE=1 runs the same chain at smoke size into runs/*_smoke (seconds, for the tests).
PY       := .venv/bin/python
VENV     := .venv/.stamp
DATA     := data/generated
SMOKE    ?=
SFX      := $(if $(SMOKE),_smoke)
FLAGS    := $(if $(SMOKE),--smoke)
SFT_NAME ?= sft$(SFX)
SFT_CKPT := runs/$(SFT_NAME)/ckpt.pt
export PYTHONHASHSEED := 0

.PHONY: setup data sft spin tspin sample paper regimes notebooks test test-fast docs bench lint clean

setup: $(VENV)

$(VENV): requirements.txt pyproject.toml
	python3 -m venv .venv
	.venv/bin/pip install -q -r requirements.txt
	.venv/bin/pip install -q --no-deps --no-build-isolation -e .
	touch $@

$(DATA)/train.jsonl: data/make_data.py $(wildcard data/tasks/*.py) | $(VENV)
	$(PY) -m data.make_data --out $(DATA)

$(DATA)/tokenizer/tokenizer.json: $(DATA)/train.jsonl | $(VENV)
	$(PY) -m model.tokenizer --train $(DATA)/train.jsonl --out $(DATA)/tokenizer

data: $(DATA)/tokenizer/tokenizer.json

# self-play starts from an SFT checkpoint: made first when missing.
# --overwrite: a target run again starts afresh, and the previous run is moved aside to runs/<name>.old-<time>
# (never deleted; the scripts refuse an existing run without it). A run still going on is never touched: a
# second `make tspin` meanwhile is refused by the run's lock. To continue a stopped run instead:
# .venv/bin/python train_tspin.py --name tspin --resume
$(SFT_CKPT): | data
	$(PY) train_sft.py --name $(SFT_NAME) $(FLAGS) --overwrite

sft: data
	$(PY) train_sft.py --name sft$(SFX) $(FLAGS) --overwrite

spin: $(SFT_CKPT)
	$(PY) train_spin.py --name spin$(SFX) --init $(SFT_CKPT) $(FLAGS) --overwrite

tspin: $(SFT_CKPT)
	$(PY) train_tspin.py --name tspin$(SFX) --init $(SFT_CKPT) $(FLAGS) --overwrite

# the SFT model and the latest self-play run (runs/tspin or runs/spin, whichever was written last) answer
# the same eval prompts, one per task family, with the checkers' verdicts
sample: $(SFT_CKPT)
	$(PY) sample.py runs/$(SFT_NAME) $$(ls -t runs/tspin$(SFX)/ckpt.pt runs/spin$(SFX)/ckpt.pt 2>/dev/null | head -1 | xargs -r dirname) --eval 5

paper: data
	$(PY) -m experiments.paper $(FLAGS)

# the regime map (experiments/regimes.py): about 2 h on 2 cores; resumable, run it again to continue
regimes: data
	$(PY) -m experiments.regimes $(FLAGS)

notebooks: data
	$(PY) -m notebooks.run --full

# two test processes, whole files each (module fixtures stay in one process); each runs its scripts on one thread
test: $(VENV)
	$(PY) -m pytest -n 2 --dist loadfile

# the inner loop: every test that starts no training process (tests/conftest.py marks the others slow)
test-fast: $(VENV)
	$(PY) -m pytest -m "not slow"

# the README and docs/ against the code: links, line count, every default they quote (about a second)
docs: $(VENV)
	$(PY) -m pytest -q tests/test_docs.py

bench: $(VENV)
	$(PY) -m bench.sampler
	$(PY) -m bench.train

lint: $(VENV)
	.venv/bin/ruff check .

clean:
	rm -rf runs $(DATA) .pytest_cache
