# nooelint: oelint.var.bbclassextend,oelint.var.mandatoryvar.SRC_URI
# (The bundle class packs the image; nothing is fetched.)
SUMMARY = "Lifeline update bundle"
DESCRIPTION = "A signed verity RAUC bundle of the Lifeline root file system for this machine."
HOMEPAGE = "https://lifeline.invalid/"
BUGTRACKER = "https://lifeline.invalid/issues"
CVE_PRODUCT = "lifeline"
SECTION = "images"
LICENSE = "MIT | Apache-2.0"
# nooelint: oelint.var.licenseremotefile - the workspace states its licence in Cargo.toml; the texts are the common ones
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302 \
                    file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"

inherit bundle

RAUC_BUNDLE_COMPATIBLE = "lifeline-${LIFELINE_MODEL}"
RAUC_BUNDLE_VERSION = "${DISTRO_VERSION}"
RAUC_BUNDLE_DESCRIPTION = "Lifeline firmware for the ${MACHINE}"
RAUC_BUNDLE_FORMAT = "verity"
RAUC_BUNDLE_SLOTS = "rootfs"
RAUC_SLOT_rootfs = "lifeline-image"
RAUC_SLOT_rootfs[fstype] = "ext4"

# Signing material comes from the site configuration (kas local_conf_header or local.conf):
# RAUC_KEY_FILE, RAUC_CERT_FILE, RAUC_KEYRING_FILE. Production keys stay in the signing
# service; the development key of firmware/keys/dev/ is for lab images only.
