"""The CI/CD workflows keep their promises: CI runs exactly the README's test command, cloud
access is by OIDC only, previews comment on the PR with the policy pack, main deploys dev,
tests it, then waits for an approval before prod. (Their syntax is checked by
``make workflows``: the GitHub workflow schema, and actionlint where installed.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"


def load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as true
    return data


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return list(job.get("steps", []))


def uses(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in steps(job) if str(s.get("uses", "")).split("@")[0] == action]


def runs(job: dict[str, Any]) -> list[str]:
    return [str(s["run"]).strip() for s in steps(job) if "run" in s]


@pytest.mark.parametrize("name", ["test.yml", "preview.yml", "deploy.yml"])
def test_no_workflow_holds_long_lived_cloud_keys(name):
    # Given a workflow file
    text = (WORKFLOWS / name).read_text()
    # Then no AWS key or Pulumi token comes from a stored secret
    assert "secrets." not in text
    assert not re.search(r"aws-(access-key-id|secret-access-key)|AWS_ACCESS_KEY_ID|PULUMI_ACCESS_TOKEN", text)


@pytest.mark.parametrize("name", ["preview.yml", "deploy.yml"])
def test_cloud_jobs_assume_roles_by_oidc(name):
    workflow = load(name)
    assert workflow["permissions"]["id-token"] == "write"
    cloud_jobs = [
        job for job in workflow["jobs"].values() if uses(job, "aws-actions/configure-aws-credentials")
    ]
    assert cloud_jobs
    for job in cloud_jobs:
        [aws] = uses(job, "aws-actions/configure-aws-credentials")
        assert aws["with"]["role-to-assume"].startswith("${{ vars.")
        [pulumi_auth] = uses(job, "pulumi/auth-actions")
        assert pulumi_auth["with"]["requested-token-type"].startswith("urn:pulumi:token-type:access_token")


def test_ci_runs_exactly_the_readme_test_command_on_python_3_11():
    workflow = load("test.yml")
    assert "pull_request" in workflow["on"] and "workflow_call" in workflow["on"]
    [job] = workflow["jobs"].values()
    assert job["runs-on"] == "ubuntu-latest"
    [python] = uses(job, "actions/setup-python")
    assert python["with"]["python-version"] == "3.11"
    assert python["with"]["cache"] == "pip"
    # the PostgreSQL server binaries the embedded runtime needs, then `make test` and nothing else
    assert any("apt-get install" in r and "postgresql" in r for r in runs(job))
    assert runs(job)[-1] == "make test"
    assert [r for r in runs(job) if "pytest" in r or "ruff" in r or "mypy" in r] == []
    assert (ROOT / "README.md").read_text().count("make test") >= 1


def test_pull_requests_preview_dev_with_a_comment_and_the_policy_pack():
    workflow = load("preview.yml")
    assert "pull_request" in workflow["on"]
    assert workflow["permissions"]["pull-requests"] == "write"
    [job] = workflow["jobs"].values()
    [pulumi] = uses(job, "pulumi/actions")
    assert pulumi["with"]["command"] == "preview"
    assert pulumi["with"]["stack-name"].endswith("/dev")
    assert pulumi["with"]["comment-on-pr"] is True
    assert pulumi["with"]["policyPacks"] == "policy"


def test_main_deploys_dev_tests_it_then_waits_for_approval_before_prod():
    workflow = load("deploy.yml")
    assert workflow["on"]["push"]["branches"] == ["main"]
    jobs = workflow["jobs"]
    # one deployment per stack at a time, never cancelled half-way, from main only
    groups = {name: jobs[name]["concurrency"] for name in ("dev", "prod")}
    assert {g["group"] for g in groups.values()} == {"deploy-dev", "deploy-prod"}
    assert all(g["cancel-in-progress"] is False for g in groups.values())
    assert all(jobs[name]["if"] == "github.ref == 'refs/heads/main'" for name in ("dev", "prod"))
    # the tests first (the same workflow pull requests run)
    assert jobs["test"]["uses"] == "./.github/workflows/test.yml"
    dev, prod = jobs["dev"], jobs["prod"]
    assert dev["needs"] == "test" and dev["environment"] == "dev"
    [up] = uses(dev, "pulumi/actions")
    assert (up["with"]["command"], up["with"]["policyPacks"]) == ("up", "policy")
    assert up["with"]["stack-name"].endswith("/dev")
    # then the e2e tests against dev's outputs, after the update
    names = [s.get("name", "") for s in steps(dev)]
    assert names.index("End-to-end tests against dev") > names.index("pulumi up")
    assert any("pytest tests/e2e --outputs dev-outputs.json" in r for r in runs(dev))
    # prod only after dev, behind the approval environment
    assert prod["needs"] == "dev" and prod["environment"] == "prod"
    [up] = uses(prod, "pulumi/actions")
    assert up["with"]["stack-name"].endswith("/prod") and up["with"]["command"] == "up"
    assert (ROOT / "Pulumi.prod.yaml").exists()


def test_make_test_validates_the_workflows_and_the_policy_pack():
    makefile = (ROOT / "Makefile").read_text()
    test_target = next(line for line in makefile.splitlines() if line.startswith("test:"))
    assert "workflows" in test_target and "$(POLICY_STAMP)" in test_target
    assert "check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml" in makefile
