# Kernel flavour of the image: cloud-amd64 (lean, VMs and clouds) or amd64.
export IMGBUILD_KERNEL=${IMGBUILD_KERNEL:-cloud-amd64}
# No DHCP stanzas for eth0/eth1: cloud-init renders the node's static
# address, and a second stanza for eth0 makes networking.service fail.
export DIB_APT_MINIMAL_CREATE_INTERFACES=0
