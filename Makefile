# datajob-operator developer tasks. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CLUSTER_DIR ?= .cluster
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

.PHONY: install
install: $(VENV)/.installed ## Create .venv and install the project with its dev tools

# Reinstall only when the dependency list changes (the package itself is installed editable).
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

examples/wordcount/data/corpus-000.txt: | $(BIN)/python
	$(BIN)/python examples/wordcount/generate.py

.PHONY: demo
demo: install examples/wordcount/data/corpus-000.txt ## The main job: word count over a 36 MB corpus in local mode, with failures injected
	rm -rf examples/wordcount/out
	$(BIN)/datajob run examples/wordcount/datajob.yaml --kill-every 0.5 --seed 1

EXAMPLE ?= wordcount
.PHONY: demo-s3
demo-s3: install tools ## An example (EXAMPLE=wordcount|sales) with its input and output on S3 (a local MinIO)
	@if [ "$(EXAMPLE)" = sales ]; then [ -e examples/sales/data/orders-00.csv ] || $(BIN)/python examples/sales/generate.py; \
	else [ -e examples/wordcount/data/corpus-000.txt ] || $(BIN)/python examples/wordcount/generate.py; fi
	$(BIN)/python examples/s3_demo.py $(EXAMPLE)

.PHONY: tools
# DATAJOB_TOOLS=control-plane builds only etcd, the control plane, kubectl and kwok (about 6 minutes cold instead
# of 20); the tests that need helm, Kueue, promtool or MinIO are then skipped, and the summary says so.
DATAJOB_TOOLS ?= all
tools: ## Build (or reuse) the pinned Kubernetes binaries: etcd, apiserver, scheduler, ... (DATAJOB_TOOLS=control-plane: fewer)
	DATAJOB_TOOLS_SET=$(DATAJOB_TOOLS) bash hack/build-tools.sh

.PHONY: test
test: install tools ## Run the whole test suite (unit + local + real control plane; CONTAINERS=1 adds real containers)
	$(if $(filter 1,$(CONTAINERS)),bash hack/container-host.sh up)
	$(if $(filter 1,$(CONTAINERS)),DATAJOB_NODE_TOOLS=1 DATAJOB_KIND_TOOLS=1 bash hack/build-tools.sh >/dev/null)
	DATAJOB_TOOLS_SET=$(DATAJOB_TOOLS) $(BIN)/pytest $(if $(filter 1,$(CONTAINERS)),--containers) $(PYTEST_ARGS)

.PHONY: test-fast
test-fast: install ## The tiers that need no Go build: unit tests and local mode (a few minutes on a fresh machine)
	DATAJOB_TOOLS_SET=none $(BIN)/pytest -m "unit or local" $(PYTEST_ARGS)

.PHONY: test-containers
test-containers: install ## Only the real-container tests: images built here, a real kubelet node (root; installs Docker etc.)
	bash hack/container-host.sh up
	DATAJOB_NODE_TOOLS=1 DATAJOB_KIND_TOOLS=1 bash hack/build-tools.sh >/dev/null
	$(BIN)/pytest --containers -m containers $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: install ## Run the fast unit tests only
	$(BIN)/pytest -m unit $(PYTEST_ARGS)

.PHONY: lint
lint: install ## ruff, ruff format --check, mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy core operator worker client tests benchmarks hack/generate_api.py

.PHONY: bench
bench: install ## Run the benchmarks (they print figures; see docs/benchmarks.md)
	$(BIN)/python benchmarks/ledger_scale.py
	$(BIN)/python benchmarks/processor_throughput.py
	$(BIN)/python benchmarks/csv_reader.py
	$(BIN)/python benchmarks/parquet_aggregate.py
	$(BIN)/python benchmarks/batch_inference.py
	$(BIN)/python benchmarks/sales_engines.py --mb 300
	$(BIN)/python benchmarks/sales_engines.py --mb 300 --format csv
	$(BIN)/python benchmarks/sales_engines.py --mb 300 --processor sql
	$(BIN)/python benchmarks/wordcount_engines.py --mb 300
	$(BIN)/python benchmarks/small_files.py
	$(BIN)/python benchmarks/skew.py
	$(BIN)/python benchmarks/dispatch_local.py --failures
	$(BIN)/python benchmarks/continuous.py

.PHONY: bench-dispatch
bench-dispatch: install ## Local dispatch: word count vs multiprocessing.Pool and PySpark (if installed), 1,000 tiny shards, failure overhead
	$(BIN)/python benchmarks/dispatch_local.py --failures

.PHONY: bench-cluster
bench-cluster: install tools ## Cluster dispatch at scale on the test control plane (kwok + a fake worker fleet) vs an Indexed Job; work re-done after losing a cluster (MultiKueue)
	$(BIN)/python benchmarks/cluster_dispatch.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/cluster_vs_local.py --mb 100
	$(BIN)/python benchmarks/cluster_loss.py

.PHONY: bench-reduce
bench-reduce: install tools ## Word count: map-only vs reduce vs a plain loop vs PySpark local[2] (installs pyspark; needs Java)
	$(BIN)/pip install -q pyspark
	$(BIN)/python benchmarks/wordcount_reduce.py --cluster
	$(BIN)/python benchmarks/wordcount_reduce.py --mb 120 --vocabulary 2000000

.PHONY: crds
crds: install ## Regenerate crds/ and docs/api-reference.md from the pydantic models
	$(BIN)/python hack/generate_api.py --output crds/datajob.dev_datajobs.yaml --docs docs/api-reference.md
	cp crds/*.yaml charts/datajob-operator/crds/

.PHONY: manifests
manifests: install ## Regenerate manifests/ (kustomize base) from the Helm chart's defaults
	$(BIN)/python hack/render_manifests.py "$$(bash hack/build-tools.sh | tail -1)/helm"

# ---- images and kind (https://kind.sigs.k8s.io) ----
# With Docker and a registry: `make kind-up kind-load deploy e2e-kind`. With no registry at all (as on the
# project's CI machines; root): add OFFLINE=1, which builds the images (image-offline) and a kind node image
# here (hack/kind-node-image.sh), and uses kind, kubectl and helm from hack/build-tools.sh.
# KIND_DOCKER_SHIM=1 additionally routes kind's docker calls through hack/kind/docker, for a dockerd that
# cannot run --privileged containers (see docs/testing.md).
IMAGE_TAG ?= dev
OPERATOR_IMAGE ?= datajob-operator:$(IMAGE_TAG)
WORKER_IMAGE ?= datajob-worker:$(IMAGE_TAG)
KIND_CLUSTER ?= datajob
ifeq ($(OFFLINE),1)
TOOLS_BIN := $(shell DATAJOB_NODE_TOOLS=1 DATAJOB_KIND_TOOLS=1 bash hack/build-tools.sh | tail -1)
KIND ?= $(TOOLS_BIN)/kind
KUBECTL ?= $(TOOLS_BIN)/kubectl
HELM ?= $(TOOLS_BIN)/helm
IMAGE_TARGET = image-offline
else
KIND ?= kind
KUBECTL ?= kubectl
HELM ?= helm
IMAGE_TARGET = image
endif
KIND_ENV = $(if $(filter 1,$(KIND_DOCKER_SHIM)),PATH=$(CURDIR)/hack/kind:$$PATH)

.PHONY: image
image: ## Build the operator and worker images (needs Docker and a registry; BASE_IMAGE=... to change the base)
	docker build -f images/operator.Dockerfile -t $(OPERATOR_IMAGE) $(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) .
	docker build -f images/worker.Dockerfile -t $(WORKER_IMAGE) $(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) .

.PHONY: image-offline
image-offline: install ## The same images without any registry or index: debootstrap base + host wheelhouse (root)
	bash hack/build-images.sh $(OPERATOR_IMAGE) $(WORKER_IMAGE)

.PHONY: kind-up
kind-up: ## Create a kind cluster from hack/kind/config.yaml (host /tmp/datajob is /data on the nodes)
	mkdir -p /tmp/datajob && chmod 0777 /tmp/datajob  # workers run as a non-root user
	$(KIND_ENV) $(KIND) create cluster --name $(KIND_CLUSTER) --config hack/kind/config.yaml \
	  $(if $(filter 1,$(OFFLINE)),--image "$$(bash hack/kind-node-image.sh | tail -1)",$(if $(KIND_NODE_IMAGE),--image $(KIND_NODE_IMAGE))) \
	  --wait 180s

.PHONY: kind-load
kind-load: $(IMAGE_TARGET) ## Build the images and load them into the kind cluster
	$(KIND_ENV) $(KIND) load docker-image --name $(KIND_CLUSTER) $(OPERATOR_IMAGE) $(WORKER_IMAGE)

.PHONY: deploy
deploy: ## Install the operator into the current cluster with Helm (the kind images, /data mounted)
	$(HELM) upgrade --install datajob-operator charts/datajob-operator --namespace datajob-system \
	  --create-namespace --wait --set image.repository=datajob-operator --set image.tag=$(IMAGE_TAG) \
	  --set image.pullPolicy=Never --set-json 'extraVolumes=[{"name":"data","hostPath":{"path":"/data"}}]' \
	  --set-json 'extraVolumeMounts=[{"name":"data","mountPath":"/data"}]' --set-json 'storage.roots=["/data"]'

.PHONY: e2e-kind
e2e-kind: install examples/wordcount/data/corpus-000.txt ## Run the word count on kind and wait for it to succeed
	mkdir -p /tmp/datajob/corpus && cp examples/wordcount/data/*.txt /tmp/datajob/corpus/
	$(KUBECTL) delete datajob wordcount --ignore-not-found --wait
	# A previous run's output (another job, maybe on another cluster) would fail this one with OutputInUse.
	rm -rf /tmp/datajob/out/wordcount
	$(KUBECTL) apply -f examples/kind/data-volume.yaml
	$(KUBECTL) apply -f examples/kind/wordcount.yaml
	@for _ in $$(seq 1 300); do \
	  phase="$$($(KUBECTL) get datajob wordcount -o jsonpath='{.status.phase}')"; \
	  case "$$phase" in Succeeded|Failed) break ;; esac; sleep 2; \
	done; $(KUBECTL) get datajob wordcount; \
	if [ "$$phase" != Succeeded ]; then $(KUBECTL) describe datajob wordcount; exit 1; fi

.PHONY: kind-down
kind-down: ## Delete the kind cluster
	$(KIND_ENV) $(KIND) delete cluster --name $(KIND_CLUSTER)

.PHONY: cluster-up
cluster-up: install tools ## Start a local cluster with the DataJob CRD, the operator and MinIO (S3) with the example's data; then kubectl apply -f examples/wordcount/datajob-s3.yaml; KUEUE=1 adds Kueue; MULTI=1 starts a MultiKueue manager and two worker clusters instead
	$(BIN)/python -m datajob_testenv up --dir $(CLUSTER_DIR) $(if $(filter 1,$(KUEUE)),--kueue) $(if $(filter 1,$(MULTI)),--multi)

.PHONY: cluster-down
cluster-down: ## Stop the local control plane started by cluster-up
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m datajob_testenv down --dir $(CLUSTER_DIR); fi

.PHONY: clean
clean: cluster-down ## Remove the venv, caches and cluster state (the tool cache in ~/.cache stays)
	rm -rf $(VENV) $(CLUSTER_DIR) .mypy_cache .ruff_cache .pytest_cache build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
