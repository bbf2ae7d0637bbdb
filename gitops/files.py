"""A render on disk: writing it into a checkout, reading the routing state back out of one."""

from __future__ import annotations

import difflib
import shutil
from pathlib import Path

from canaryflow.kernel.contracts.routing import RoutingConfig
from gitops.model import Rendering
from gitops.render import overlay_dir
from gitops.traffic import ROUTERS


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
    """The routing state a checkout holds for (model, environment), whichever router rendered it.

    The local inference server of the demo follows this the way a pod follows its mounted ConfigMap.
    """
    overlay = _inside(Path(root), overlay_dir(model, environment))
    for router in ROUTERS.values():
        routing = router.routing_from_overlay(overlay, model)
        if routing is not None:
            return routing
    raise FileNotFoundError(f"{overlay}: no routing state of any traffic router for {model}/{environment}")
