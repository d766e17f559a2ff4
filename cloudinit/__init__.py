"""Per-node cloud-init data: from the cluster model to seeds that make a role image into a node."""
