"""mayanode-operator: runs MAYAChain validator nodes on Kubernetes."""

__version__ = "0.1.0"
