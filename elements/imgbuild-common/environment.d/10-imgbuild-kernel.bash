# Kernel flavour of the image: cloud-amd64 (lean, VMs and clouds) or amd64.
export IMGBUILD_KERNEL=${IMGBUILD_KERNEL:-cloud-amd64}
