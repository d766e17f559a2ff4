"""imgbuild: build, seed and prove the images of an LVS-DR + heartbeat HA cluster."""

__version__ = "0.1.0"
