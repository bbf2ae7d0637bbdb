"""A render on disk: writing it into a checkout, reading the routing state back out of one."""

from __future__ import annotations

import difflib
import shutil
from pathlib import Path

from canaryflow.kernel.contracts.routing import ROUTING_FILE_KEY, RoutedVersion, RoutingConfig
from gitops.model import Rendering
from gitops.render import overlay_dir
from gitops.resources import ROLE_LABEL
from gitops.traffic.configmap import ROUTING_CONFIGMAP_FILE
from gitops.traffic.httproute import HTTPROUTE_FILE, deployment_file
from gitops.yamlio import load_yaml


def _inside(root: Path, relative: str) -> Path:
    target = (root / relative).resolve()
    if not target.is_relative_to(root.resolve()):
        raise ValueError(f"path {relative!r} leaves the repository")
    return target


def write_rendering(root: Path, rendering: Rendering) -> None:
    """Replace the paths the render owns with its files; everything else in `root` stays untouched."""
    targets = {relative: _inside(root, relative) for relative in rendering.files}
    for owned in rendering.owned:
        path = _inside(root, owned)
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    for relative, text in rendering.files.items():
        targets[relative].parent.mkdir(parents=True, exist_ok=True)
        targets[relative].write_text(text)


def _owned_files(root: Path, rendering: Rendering) -> dict[str, str]:
    found: dict[str, str] = {}
    for owned in rendering.owned:
        path = _inside(root, owned)
        paths = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in paths:
            if file.is_file():
                found[file.relative_to(root.resolve()).as_posix()] = file.read_text()
    return found


def diff_rendering(root: Path, rendering: Rendering) -> str:
    """A unified diff from what `root` holds to what writing `rendering` there would leave."""
    before = _owned_files(root, rendering)
    chunks: list[str] = []
    for relative in sorted(set(before) | set(rendering.files)):
        old, new = before.get(relative), rendering.files.get(relative)
        if old == new:
            continue
        chunks.extend(
            difflib.unified_diff(
                (old or "").splitlines(keepends=True),
                (new or "").splitlines(keepends=True),
                fromfile=f"a/{relative}" if old is not None else "/dev/null",
                tofile=f"b/{relative}" if new is not None else "/dev/null",
            )
        )
    return "".join(chunks)


def routing_from_checkout(root: Path | str, model: str, environment: str) -> RoutingConfig:
    """The routing state a checkout holds for (model, environment), in either traffic mode.

    The local inference server of the demo follows this the way a pod follows its mounted ConfigMap.
    """
    overlay = _inside(Path(root), overlay_dir(model, environment))
    if (overlay / ROUTING_CONFIGMAP_FILE).exists():
        doc = load_yaml((overlay / ROUTING_CONFIGMAP_FILE).read_text())
        return RoutingConfig.model_validate(load_yaml(doc["data"][ROUTING_FILE_KEY]))
    if (overlay / HTTPROUTE_FILE).exists():
        return _routing_from_httproute(overlay, model)
    raise FileNotFoundError(f"{overlay}: no routing ConfigMap or HTTPRoute for {model}/{environment}")


def _routing_from_httproute(overlay: Path, model: str) -> RoutingConfig:
    """Weights from the HTTPRoute's backends, URIs and roles from each version's Deployment."""
    route = load_yaml((overlay / HTTPROUTE_FILE).read_text())
    versions = []
    for backend in route["spec"]["rules"][0]["backendRefs"]:
        version = str(backend["name"]).removeprefix(f"{model}-v")
        deployment = load_yaml((overlay / deployment_file(version)).read_text())
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        role = deployment["metadata"]["labels"][ROLE_LABEL]
        uri = args[args.index("--model-uri") + 1]
        versions.append(RoutedVersion(version=version, uri=uri, weight=backend["weight"], role=role))
    return RoutingConfig(model=model, versions=versions)
