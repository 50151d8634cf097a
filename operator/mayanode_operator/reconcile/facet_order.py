"""The MayaNode facets, in the order they run.

Replica control first (it may stop the node); the node's IP, mimir votes and one-shot actions next;
backups before upgrades, whose pre-upgrade gate waits for them; upgrades last, since they need the
rest settled.
"""

from __future__ import annotations

from .facet_external_ip import ExternalIPFacet
from .facet_mimir import MimirFacet
from .facet_node_actions import NodeActionsFacet
from .facet_replicas import ReplicasFacet
from .facet_upgrade import UpgradeFacet
from .facets import Facet
from .facet_backup import BackupFacet

FACETS: tuple[Facet, ...] = (
    ReplicasFacet(),
    ExternalIPFacet(),
    MimirFacet(),
    NodeActionsFacet(),
    BackupFacet(),
    UpgradeFacet(),
)
