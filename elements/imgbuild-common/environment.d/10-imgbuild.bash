# Kernel flavour of the image: cloud-amd64 or amd64. imgbuild passes its
# model's build.kernel; the default lives there only.
export IMGBUILD_KERNEL=${IMGBUILD_KERNEL:?imgbuild sets it from build.kernel}
# No DHCP stanzas for eth0/eth1: cloud-init renders the node's static
# address, and a second stanza for eth0 makes networking.service fail.
export DIB_APT_MINIMAL_CREATE_INTERFACES=0
