"""Serving profiles, one file each behind `ServingProfile` (base.py), found by name in `PROFILES`.

`canaryflow`: the project's own server (the default). `vllm`, `triton`, `tei`, `mlserver`: those
servers' own images and flags. `kserve-runtime`: a KServe ServingRuntime by `modelFormat`. `custom`:
the policy's own container template. Routers render any of them through `gitops.profiles.workload`.
Adding a profile: a file with a class implementing `ServingProfile`, its line below, and its name in
`canaryflow.kernel.contracts.serving`.
"""

from __future__ import annotations

from canaryflow.kernel.contracts.serving import SERVING_PROFILES
from gitops.profiles.base import MODEL_MOUNT, Server, ServingProfile, VersionRef
from gitops.profiles.canaryflow import CanaryflowProfile
from gitops.profiles.custom import CustomProfile
from gitops.profiles.kserve_runtime import KServeRuntimeProfile
from gitops.profiles.mlserver import MlserverProfile
from gitops.profiles.tei import TeiProfile
from gitops.profiles.triton import TritonProfile
from gitops.profiles.vllm import VllmProfile

PROFILES: dict[str, ServingProfile] = {
    profile.name: profile
    for profile in (
        CanaryflowProfile(),
        VllmProfile(),
        TritonProfile(),
        TeiProfile(),
        MlserverProfile(),
        KServeRuntimeProfile(),
        CustomProfile(),
    )
}

if set(PROFILES) != set(SERVING_PROFILES):  # a name without a profile, or a profile without a name
    raise RuntimeError(f"serving profiles {sorted(PROFILES)} do not match {sorted(SERVING_PROFILES)}")


def serving_profile(name: str) -> ServingProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(
            f"serving.profile: unknown profile {name!r} (one of: {', '.join(sorted(PROFILES))})"
        ) from None


__all__ = ["MODEL_MOUNT", "PROFILES", "Server", "ServingProfile", "VersionRef", "serving_profile"]
