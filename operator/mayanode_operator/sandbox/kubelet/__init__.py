"""The simulated kubelet: deployment controller, node, LoadBalancer controller and exec target."""

from .core import HELPER_LABEL, NODE_NAME, ExecUnavailable, ImageBehaviour, PodRuntime, SimulatedKubelet
from .volumes import ContainerFS, Entry, FsError, Mount, VolumeTree

__all__ = [
    "HELPER_LABEL", "NODE_NAME", "ContainerFS", "Entry", "ExecUnavailable", "FsError", "ImageBehaviour",
    "Mount", "PodRuntime", "SimulatedKubelet", "VolumeTree",
]
