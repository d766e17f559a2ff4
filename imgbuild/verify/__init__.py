"""`imgbuild verify`: boot the cluster on a private network and prove it with pytest-testinfra."""
