# kubetask developer targets. `make help` lists them.
PYTHON ?= python
TOOLS_DIR ?= $(HOME)/.cache/kubetask/bin
HELM ?= $(shell [ -x $(TOOLS_DIR)/helm ] && echo $(TOOLS_DIR)/helm || echo helm)
KUBECTL ?= $(shell [ -x $(TOOLS_DIR)/kubectl ] && echo $(TOOLS_DIR)/kubectl || echo kubectl)
IMAGE ?= ghcr.io/kubetask/kubetask:dev
CHART := charts/kubetask

export KUBETASK_HELM := $(HELM)
export KUBETASK_KUBECTL := $(KUBECTL)

.PHONY: help dev test lint image chart manifests sync-crds templates e2e e2e-kind tools

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

dev: ## run everything locally on a real control plane with kwok GPU nodes (kubetask dev)
	$(PYTHON) -m kubetask.cli dev

test: ## the README test command (unit, component and e2e on the local control plane)
	$(PYTHON) -m pytest -q

lint: ## ruff + mypy --strict (over the installed layout, see hack/typecheck.py)
	ruff check .
	$(PYTHON) -P hack/typecheck.py

image: ## build the container image
	docker build -t $(IMAGE) .

chart: sync-crds ## helm lint + template the chart
	$(HELM) lint --strict $(CHART)
	$(HELM) template kubetask $(CHART) --namespace kubetask-system --include-crds > /dev/null
	@echo "chart ok"

manifests: sync-crds ## regenerate manifests/base/kubetask.yaml (and the CRD copies)

sync-crds: ## crds/ -> chart, package and manifests/base/kubetask.yaml (hack/sync-crds.sh)
	HELM=$(HELM) bash hack/sync-crds.sh

templates: ## regenerate the built-in TaskTemplates (package + chart copies)
	$(PYTHON) hack/gen-tasktemplates.py

e2e: ## run tests/e2e against $$KUBECONFIG
	$(PYTHON) -m pytest -q tests/e2e

e2e-kind: ## kind cluster + image + fake GPUs + helm install + tests/e2e
	HELM=$(HELM) KUBECTL=$(KUBECTL) IMAGE=$(IMAGE) hack/e2e-kind.sh

tools: ## download helm + kubectl into ~/.cache/kubetask/bin
	KUBETASK_TOOLS_DIR=$(TOOLS_DIR) hack/fetch-tools.sh
