SUMMARY = "Lifeline appliance image"
DESCRIPTION = "The firmware of a Lifeline box: read-only root with the Lifeline daemons \
               under systemd, RAUC for A/B updates, nftables, and the data partition."
HOMEPAGE = "https://lifeline.invalid/"
BUGTRACKER = "https://lifeline.invalid/issues"
CVE_PRODUCT = "lifeline"
SECTION = "images"
LICENSE = "MIT | Apache-2.0"
# nooelint: oelint.var.licenseremotefile - the workspace states its licence in Cargo.toml; the texts are the common ones
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302 \
                    file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"

inherit core-image

IMAGE_FEATURES:append = " read-only-rootfs"
IMAGE_INSTALL = "packagegroup-core-boot lifeline-relay lifeline-license lifeline-panel lifeline-supervisor lifeline-rootfs \
                 rauc grub-editenv nftables e2fsprogs-e2fsck dosfstools sqlite3 kernel-module-dm-verity kernel-module-squashfs"
IMAGE_ROOTFS_SIZE = "786432"
IMAGE_ROOTFS_EXTRA_SPACE = "0"
IMAGE_OVERHEAD_FACTOR = "1.0"

# The admin's network settings live on the data partition (see rootfs/etc/systemd/network):
# /etc/systemd/network becomes a link to them. Done on the finished root file system because
# the folder belongs to the systemd package.
lifeline_network_on_data() {
    rm -rf ${IMAGE_ROOTFS}${sysconfdir}/systemd/network
    ln -s /data/lifeline/network ${IMAGE_ROOTFS}${sysconfdir}/systemd/network
}
lifeline_network_on_data[doc] = "Makes /etc/systemd/network a link to the admin's settings on the data partition"
ROOTFS_POSTPROCESS_COMMAND += "lifeline_network_on_data"

do_image_wic[depends] += "lifeline-boot-state:do_deploy"
WICVARS:append = " LIFELINE_SRCDIR"
