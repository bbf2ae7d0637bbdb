"""Every body and file from outside goes through the guarded reader (canaryflow.kernel.guarded_input).

A raw parser call (`json.loads`, `orjson.loads`, `yaml.load`/`safe_load`, `model_validate_json`,
`read_text`/`read_bytes`) anywhere in the product is allowed only in the files listed here, each with
the reason its input is not hostile or is bounded otherwise. A new route or CLI reader that parses
on its own fails this test, so it cannot forget the checks (size, depth, integer length, encoding,
NaN, regular files).
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("canaryflow", "controller", "workflows", "gitops", "inference", "policies")
RAW = re.compile(
    r"\b(json\.loads|orjson\.loads|yaml\.load|yaml\.safe_load|model_validate_json)\(|\.read_(text|bytes)\("
)

ALLOWED = {
    "canaryflow/kernel/guarded_input/__init__.py": "the guarded reader itself",
    "canaryflow/adapters/predictions/jsonl.py": "the server's own log, opened as a regular file; orjson "
    "refuses NaN, integers past 64 bits and deep nesting, and each line is validated by PredictionRecord",
    "canaryflow/app/doctor.py": "answers of the services `doctor` probes, read for a diagnosis only",
    "canaryflow/adapters/metrics/prometheus.py": "range-query answers of the configured Prometheus (the "
    "client's own response.json() read them before); orjson refuses NaN, integers past 64 bits and deep "
    "nesting, and a batched answer (every rollout's series) is too large for per-value checks",
    "canaryflow/app/install/dashboards.py": "the dashboards this package renders itself",
    "canaryflow/app/local/notify_receiver.py": "the local demo's notification sink, loopback only",
    "canaryflow/app/local/process.py": "a child process's own log file",
    "canaryflow/kernel/component_settings.py": "a `<secret>_FILE` (a mounted Secret): the whole file is "
    "the value",
    "canaryflow/app/local/kubelet.py": "Kustomize's build of canaryflow's own overlay; its own child logs",
    "controller/drift_reference.py": "the reference file the controller saved itself, read through "
    "read_regular_file (bounded); a file it cannot read is treated as none set",
    "controller/notice_outbox.py": "rows the controller wrote to its own store",
    "controller/shared_outbox.py": "rows the controller replicas wrote to their shared database",
    "controller/rollout/store.py": "rows the controller wrote to its own store",
    "controller/rollout/actions.py": "rows the controller wrote to its own store",
    "gitops/files.py": "files of the GitOps checkout canaryflow renders and commits",
    "gitops/locks.py": "/proc/<pid>/comm of a lock holder",
    "gitops/traffic/configmap.py": "manifests canaryflow rendered into its own GitOps repo",
    "gitops/traffic/httproute.py": "manifests canaryflow rendered into its own GitOps repo",
    "gitops/traffic/istio.py": "manifests canaryflow rendered into its own GitOps repo",
    "gitops/traffic/kserve.py": "manifests canaryflow rendered into its own GitOps repo",
    "gitops/traffic/versions.py": "manifests canaryflow rendered into its own GitOps repo",
    "gitops/validate.py": "the vendored Kubernetes/Argo schemas",
    "gitops/yamlio.py": "the YAML reader of canaryflow's own rendered manifests",
    "inference/api.py": "request bodies bounded by max_body_bytes, parsed by pydantic-core (jiter), which "
    "refuses integers out of range and nesting past its limit with a ValidationError: a 400",
    "inference/engine_process.py": "messages between the server's own processes",
    "inference/runner.py": "settings and routing the parent process serialized for its workers",
    "inference/models/loader.py": "the model's own config files (a registered model)",
    "inference/models/chain_plan.py": "the model's own config files (a registered model)",
    "inference/models/bert_files.py": "the model's own config, tokenizer and weight-header files (a "
    "registered model; the header's length is bounded before it is read)",
    "inference/wordpiece.py": "the model's own tokenizer file (a registered model)",
    "workflows/local/store.py": "rows the local engine wrote to its own store",
    "workflows/steps/command.py": "step inputs the controller serialized into the workflow",
    "workflows/steps/release.py": "the verdict the analysis step of the same workflow wrote",
}


def _raw_parsing_files() -> set[str]:
    found = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if RAW.search(path.read_text()):
                found.add(path.relative_to(ROOT).as_posix())
    return found


def test_only_the_listed_files_parse_on_their_own() -> None:
    unlisted = sorted(_raw_parsing_files() - set(ALLOWED))
    assert not unlisted, f"parse through canaryflow.kernel.guarded_input (or list with a reason): {unlisted}"


def test_the_list_names_no_file_that_no_longer_parses() -> None:
    assert not sorted(set(ALLOWED) - _raw_parsing_files())


def test_the_checker_sees_a_raw_parse(tmp_path: Path) -> None:
    assert RAW.search("doc = json.loads(body)") and RAW.search("x = path.read_bytes()")
    assert not RAW.search("doc = parse_json(body, 'body')")
