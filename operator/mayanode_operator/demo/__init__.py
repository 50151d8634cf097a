"""`mayanode-operator demo`: the whole story on an emulated cluster, no cluster needed."""
