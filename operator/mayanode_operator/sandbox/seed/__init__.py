"""Builders of node-launcher namespaces (``mayanode-stack`` chart objects) for the sandbox."""

from .nodelauncher import (
    GATEWAY_IMAGE,
    IMAGE_REPOSITORY,
    StackSpec,
    bifrost_deployment,
    deployments,
    external_ip_configmaps,
    gateway_deployment,
    mayanode_deployment,
    mnemonic_secret,
    namespace,
    password_secret,
    pvcs,
    services,
    stack_objects,
)

__all__ = [
    "GATEWAY_IMAGE", "IMAGE_REPOSITORY", "StackSpec", "bifrost_deployment", "deployments",
    "external_ip_configmaps", "gateway_deployment", "mayanode_deployment", "mnemonic_secret", "namespace",
    "password_secret", "pvcs", "services", "stack_objects",
]
