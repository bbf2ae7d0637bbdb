"""Extracts what the serving profiles rely on from the servers' own sources, into `<server>.txt`.

Run against snapshots of the upstream repositories (`git --git-dir <repo> show <commit>:<path>`):

    python -m tests.gitops.servers.extract triton  /work/.mirror/triton-inference-server+server/repo
    python -m tests.gitops.servers.extract tei     /work/.mirror/huggingface+text-embeddings-inference/repo
    python -m tests.gitops.servers.extract mlserver /work/.mirror/SeldonIO+MLServer/repo
    python -m tests.gitops.servers.extract kserve  /work/.mirror/kserve+kserve/repo

Each output line is `<what> <value>`: `flag --x` (a command-line option the server's parser defines),
`env NAME` (a setting read from the environment), `endpoint /path` (an HTTP route), `default name=value`
(a parser default), `storage prefix` (a storageUri scheme), `command word`. The first lines name the
repository, commit and files. vllm.txt is transcribed (see PROVENANCE.md): vLLM's repository is larger
than a snapshot may be.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def _show(repo: str, commit: str, path: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", repo, "show", f"{commit}:{path}"], capture_output=True, text=True, check=True
    ).stdout


def _triton(repo: str, commit: str) -> tuple[list[str], list[str]]:
    paths = [
        "src/command_line_parser.cc",
        "src/command_line_parser.h",
        "src/http_server.cc",
        "src/http_server.h",
    ]
    parser, header, http, http_header = (_show(repo, commit, p) for p in paths)
    lines = [
        f"flag --{name}" for name in sorted(set(re.findall(r'\{\s*OPTION_[A-Z_]+,\s*"([a-z0-9-]+)"', parser)))
    ]
    for name in ("http_port", "grpc_port", "metrics_port"):
        found = re.search(rf"int32_t {name}_\{{(\d+)\}}", header)
        if found:
            lines.append(f"default {name.replace('_', '-')}={found.group(1)}")
    if re.search(r'server_regex_\(R"\(/v2\(\?:/health/\(live\|ready\)\)\?\)"\)', http):
        lines += ["endpoint /v2/health/live", "endpoint /v2/health/ready"]
    if "HTTPMetricsServer" in http_header and 'api_regex_(R"(/metrics/?)")' in http_header:
        lines.append("endpoint /metrics")
    return paths, lines


def _tei(repo: str, commit: str) -> tuple[list[str], list[str]]:
    paths = ["router/src/main.rs", "router/src/http/server.rs"]
    main, server = (_show(repo, commit, p) for p in paths)
    struct = main[main.index("struct Args") : main.index("\n}\n", main.index("struct Args"))]
    fields = re.findall(r"^\s+(?:pub\s+)?([a-z_]+): ", struct, re.MULTILINE)
    lines = [f"flag --{f.replace('_', '-')}" for f in sorted(set(fields))]
    lines += [f"endpoint {p}" for p in sorted(set(re.findall(r'\.route\("([^"]+)"', server)))]
    return paths, lines


def _class_fields(source: str, name: str) -> list[str]:
    start = source.index(f"class {name}(")
    end = source.find("\nclass ", start + 1)
    body = source[start : end if end > 0 else None]
    return re.findall(r"^    ([a-z][a-z0-9_]*): ", body, re.MULTILINE)


def _mlserver(repo: str, commit: str) -> tuple[list[str], list[str]]:
    paths = ["mlserver/cli/main.py", "mlserver/settings.py", "mlserver/rest/app.py"]
    cli, settings, app = (_show(repo, commit, p) for p in paths)
    lines = [f"command {c}" for c in re.findall(r'@root\.command\("([a-z]+)"\)', cli)]
    lines += [f"env MLSERVER_{f.upper()}" for f in _class_fields(settings, "Settings")]
    model_fields = _class_fields(settings, "ModelSettings") + _class_fields(settings, "ModelParameters")
    if "MLSERVER_MODEL_IMPLEMENTATION" in settings:
        model_fields.append("implementation")
    lines += [f"env MLSERVER_MODEL_{f.upper()}" for f in model_fields]
    for name in ("http_port", "metrics_port"):
        found = re.search(rf"^    {name}: int = (\d+)", settings, re.MULTILINE)
        if found:
            lines.append(f"default {name}={found.group(1)}")
    endpoint = re.search(r'^    metrics_endpoint: Optional\[str\] = "([^"]+)"', settings, re.MULTILINE)
    if endpoint:
        lines.append(f"endpoint {endpoint.group(1)}")
    lines += [f"endpoint {p}" for p in sorted(set(re.findall(r'APIRoute\("(/v2/health/[a-z]+)"', app)))]
    return paths, sorted(set(lines))


def _kserve(repo: str, commit: str) -> tuple[list[str], list[str]]:
    runtimes = [f"config/runtimes/kserve-{n}.yaml" for n in ("sklearnserver", "xgbserver", "lgbserver")]
    runtimes.append("config/runtimes/kserve-huggingfaceserver.yaml")
    paths = [
        *runtimes,
        "python/kserve/kserve/protocol/rest/server.py",
        "python/kserve/kserve/protocol/rest/v1_endpoints.py",
        "pkg/controller/v1beta1/inferenceservice/utils/utils.go",
        "pkg/constants/constants.go",
    ]
    texts = [_show(repo, commit, p) for p in paths]
    lines = []
    for text in texts[: len(runtimes)]:
        lines += [f"flag {flag}" for flag in re.findall(r"^\s+- (--[a-z_]+)=", text, re.MULTILINE)]
        lines += [f"format {fmt}" for fmt in re.findall(r"supportedModelFormats:\n\s+- name: ([a-z]+)", text)]
    server, v1, utils, constants = texts[len(runtimes) :]
    if 'add_api_route(r"/", ' in server:
        lines.append("endpoint /")
    if 'r"/models/{model_name}", v1_endpoints.model_ready' in v1 and "V1_ROUTE_PREFIX" in v1:
        lines.append("endpoint /v1/models/{model_name}")
    prefixes = re.search(r"SupportedStorageURIPrefixList = \[\]string\{([^}]*)\}", utils)
    if prefixes:
        lines += [f"storage {p}" for p in re.findall(r'"([a-z0-9+]+://)"', prefixes.group(1))]
    env = re.search(r'CustomSpecStorageUriEnvVarKey\s+= "([A-Z_]+)"', constants)
    if env:
        lines.append(f"env {env.group(1)}")
    return paths, sorted(set(lines))


EXTRACTORS = {"triton": _triton, "tei": _tei, "mlserver": _mlserver, "kserve": _kserve}
REPOS = {
    "triton": "triton-inference-server/server",
    "tei": "huggingface/text-embeddings-inference",
    "mlserver": "SeldonIO/MLServer",
    "kserve": "kserve/kserve",
}


def main(server: str, repo: str) -> None:
    commit = subprocess.run(
        ["git", "--git-dir", repo, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    paths, lines = EXTRACTORS[server](repo, commit)
    head = [f"# github.com/{REPOS[server]} at {commit}", *(f"# {p}" for p in paths)]
    (HERE / f"{server}.txt").write_text("\n".join([*head, *sorted(set(lines))]) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
