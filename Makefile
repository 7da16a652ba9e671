# catlip: the two commands a newcomer runs are `make demo` and `make test` (see README.md).
# Both install what is missing first (`make setup`), then build what they need.
SHELL := /bin/bash
.DEFAULT_GOAL := demo

# Debian packages the build, the data and the tests need (python3 runs the dataset scripts some
# tests check); installed only when missing.
APT_PACKAGES := pkg-config libjpeg-dev libpng-dev libopenblas-dev wordnet-base libopenmpi-dev openmpi-bin python3
# Python for the data generators and peer scripts (not for the build or the tests).
VENV := .venv
PYTHON := $(VENV)/bin/python
# CPU the release build is compiled for: native (default), a name such as haswell, or generic.
CATLIP_TARGET_CPU ?= native
export CATLIP_TARGET_CPU
CATLIP := .build/release/catlip
DEMO_DIR := .demo

.PHONY: setup setup-python build test demo data bench-pipeline clean

setup:
	@missing=""; \
	for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "setup: installing$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@command -v swift >/dev/null || { echo "setup: swift is not on PATH (Swift 6 toolchain needed)"; exit 1; }

setup-python: setup
	@if [ ! -x $(PYTHON) ]; then python3 -m venv $(VENV); fi
	@$(PYTHON) -c "import PIL, numpy" 2>/dev/null || $(VENV)/bin/pip install -q pillow numpy

build: setup
	swift build -c release --product catlip

# XCTest only (no Swift Testing suites here), then one closing line: "tests: N passed, N failed,
# N skipped" (skipped: checks that need what this machine lacks, e.g. AVX512_BF16, or data made
# on demand).
test: setup
	swift build --build-tests
	@set -o pipefail; swift test --skip-build --disable-swift-testing 2>&1 | tee .build/test.log; status=$$?; \
	summary=$$(grep -E "^[[:space:]]*Executed [0-9]+ tests?, with ([0-9]+ tests? skipped and )?[0-9]+ failures?" .build/test.log | tail -n 1); \
	total=$$(echo "$$summary" | sed -E 's/.*Executed ([0-9]+) tests?.*/\1/'); \
	failed=$$(echo "$$summary" | sed -E 's/.* ([0-9]+) failures?.*/\1/'); \
	skipped=$$(echo "$$summary" | grep -oE "[0-9]+ tests? skipped" | grep -oE "^[0-9]+" || echo 0); \
	if [ -z "$$summary" ]; then echo "tests: no XCTest summary found"; exit 1; fi; \
	echo "tests: $$((total - failed - skipped)) passed, $$failed failed, $$skipped skipped"; exit $$status

# The main job (README.md): the composed corpus of `make data` when it is missing, 2,000
# validation scenes composed with another seed, the vocabulary (min-count 50) and label caches,
# then `catlip train --config configs/demo.yaml` (about 11 minutes on 2 cores) and its report,
# zero-shot classification of the held-out drawings (one folder per object noun), and k-shot
# transfer to them (`catlip eval transfer`: k = 1, 2 and all of each class's training half,
# Transfer Init against a random head, a linear probe and training from scratch; 12 fine-tunes
# of 300 steps, about 6 minutes; the table in DEMO_RUN/transfer/transfer.md and .svg).
# Run again, it resumes (or re-reports) the run in DEMO_RUN and the fine-tunes in DEMO_RUN/transfer.
DEMO_RUN ?= runs/demo
SCENE_PATTERN = data/scenes/$$(python3 -c 'import json; print(json.load(open("data/scenes/summary.json"))["pattern"])')
VAL_PATTERN = data/scenes-val/$$(python3 -c 'import json; print(json.load(open("data/scenes-val/summary.json"))["pattern"])')
demo: build
	@[ -f data/scenes/summary.json ] || $(MAKE) data
	@[ -f data/scenes-val/summary.json ] || $(CATLIP) datasets compose --objects data/objects/objects.jsonl \
	  --out data/scenes-val --scenes 2000 --size $(SCENE_SIZE) --seed 1 --singles 0 --threads 2
	@[ -f data/scenes/vocab.tsv ] || $(CATLIP) vocab build --data "$(SCENE_PATTERN)" --min-count 50 --out data/scenes/vocab.tsv
	$(CATLIP) vocab cache --data "$(SCENE_PATTERN)" --vocab data/scenes/vocab.tsv
	$(CATLIP) vocab cache --data "$(VAL_PATTERN)" --vocab data/scenes/vocab.tsv
	@if [ -f $(DEMO_RUN)/config.yaml ]; then \
	  $(CATLIP) train --resume $(DEMO_RUN); \
	else \
	  $(CATLIP) train --config configs/demo.yaml --set run.dir=$(DEMO_RUN) \
	    --set data.train="$(SCENE_PATTERN)" --set data.val="$(VAL_PATTERN)"; \
	fi
	$(CATLIP) eval zero-shot --model $(DEMO_RUN)/model --data data/objects/heldout --top-k 5 \
	  --json $(DEMO_RUN)/zero-shot.json --svg $(DEMO_RUN)/zero-shot-confusion.svg
	$(CATLIP) eval transfer --model $(DEMO_RUN)/model --data data/objects/heldout --out $(DEMO_RUN)/transfer \
	  --config configs/finetune-demo.yaml --shots 1,2,all --seeds 0

# The real corpora: OpenClipArt drawings with their titles and keywords, as train/val shards in
# data/openclipart (installs Debian's openclipart-png and openclipart-svg when missing); the named
# object drawings (OpenMoji, EmojiOne, OpenClipArt objects; 10% held out as the ImageFolder
# data/objects/heldout) in data/objects; and SCENES captioned scenes composed from them, with
# the single drawings, as shards in data/scenes (issue 6; reproducible from SCENE_SEED).
SCENES ?= 100000
SCENE_SIZE ?= 64
SCENE_SEED ?= 0
data: build
	python3 datasets/openclipart/build.py --out data/openclipart --catlip $(CATLIP)
	python3 datasets/objects/build.py --out data/objects
	$(CATLIP) datasets compose --objects data/objects/objects.jsonl --out data/scenes \
	  --scenes $(SCENES) --size $(SCENE_SIZE) --seed $(SCENE_SEED) --threads 2

# The pipeline benchmark of BENCHMARKS.md (500 photos; the peer is run by hand, see there).
bench-pipeline: build setup-python
	@[ -f $(DEMO_DIR)/bench-photos/00499.jpg ] || $(PYTHON) datasets/make_bench_photos.py --count 500 --out $(DEMO_DIR)/bench-photos
	for s in 224 64; do for t in 1 2; do $(CATLIP) bench pipeline --images $(DEMO_DIR)/bench-photos --size $$s --threads $$t; done; done

clean:
	rm -rf .build $(DEMO_DIR)
