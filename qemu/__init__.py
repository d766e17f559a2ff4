"""Running nodes: QEMU machines on a private network namespace, driven over QMP and SSH."""
