# Everything a fresh machine needs: `make demo`, `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch first, pinned: with pip on this kind of machine these come from local disk. The venv
# gets both sides: the worker extra (torch, the models) besides the producer's `pip install mmq`.
TORCH ?= torch==2.14.1 torchvision==0.29.1
FLICKR ?= ../shared/data/flickr8k-dev
IMAGENET ?= ../shared/data/imagenet-sample

.PHONY: install demo serve test test-fast lint eval bench bench-1m bench-video bench-api chaos clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[worker,dev]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	HF_HUB_OFFLINE=1 $(VENV)/bin/mmq demo

# The API and its page over the demo collection, with workers, until Ctrl-C.
serve: install
	HF_HUB_OFFLINE=1 $(VENV)/bin/mmq serve --demo

test: install
	HF_HUB_OFFLINE=1 $(VENV)/bin/pytest -q

# Unit tests only: no servers, no worker processes, no training (about a minute).
test-fast: install
	HF_HUB_OFFLINE=1 $(VENV)/bin/pytest -q -m "not slow"

lint: install
	$(VENV)/bin/ruff check mmq workers tests migrations benchmarks
	$(VENV)/bin/mypy mmq workers tests migrations benchmarks

# Held-out evaluation of the shipped recipe: a head trained (as the shipped one, fixed steps)
# on half of flickr8k-dev, then ConSE and that head through the queue on the other half,
# with the English captions and with the Chinese ones (Flickr8k-CN).
HELDOUT := $(abspath .mmq/heads/heldout)
eval: install
	HF_HUB_OFFLINE=1 $(VENV)/bin/mmq train --images $(FLICKR)/images --captions $(FLICKR)/captions.csv \
		--extra-images $(IMAGENET) --extra-captions $(IMAGENET)/labels.csv \
		--val-fraction 0.5 --steps 100 --eval-every 1000 --out $(HELDOUT)
	for model in lite-conse lite+head:$(HELDOUT); do for captions in captions captions-zh; do \
		echo "== $$model on the held-out half, $$captions.csv"; \
		HF_HUB_OFFLINE=1 MMQ_MODEL=$$model $(VENV)/bin/mmq eval --images $(FLICKR)/images \
			--captions $(FLICKR)/$$captions.csv --only $(HELDOUT)/val_images.txt || exit 1; \
	done; done

bench: install
	HF_HUB_OFFLINE=1 $(PY) -m benchmarks.bench

# Kills pool processes, the main worker process and the broker during a 500-item ingest.
chaos: install
	HF_HUB_OFFLINE=1 $(PY) -m benchmarks.chaos

bench-video: install
	HF_HUB_OFFLINE=1 $(PY) -m benchmarks.video_ingest

# Search and ingest through `mmq serve` against the same through the Client (issue 15).
bench-api: install
	HF_HUB_OFFLINE=1 $(PY) -m benchmarks.bench_api

# A million vectors, `vector` against `halfvec` (benchmarks/results-1m.json); not in CI.
bench-1m: install
	HF_HUB_OFFLINE=1 $(PY) -m benchmarks.bench_1m

clean:
	rm -rf .mmq
