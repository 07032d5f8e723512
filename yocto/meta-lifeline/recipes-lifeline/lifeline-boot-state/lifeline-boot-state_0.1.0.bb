# nooelint: oelint.var.bbclassextend,oelint.var.mandatoryvar.SRC_URI
# (Target-only; it makes its image from nothing but grub-editenv and mtools.)
SUMMARY = "Lifeline boot-state partition"
DESCRIPTION = "A small FAT image holding the GRUB environment of the A/B slots (a fresh \
               disk boots slot A), written into the boot-state partition by the wks file."
HOMEPAGE = "https://lifeline.invalid/"
BUGTRACKER = "https://lifeline.invalid/issues"
CVE_PRODUCT = "lifeline"
SECTION = "bootloaders"
LICENSE = "MIT | Apache-2.0"
# nooelint: oelint.var.licenseremotefile - the workspace states its licence in Cargo.toml; the texts are the common ones
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302 \
                    file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"

DEPENDS = "dosfstools-native grub-native mtools-native"

inherit deploy nopackages

S = "${WORKDIR}/sources"
B = "${WORKDIR}/build"

do_configure[noexec] = "1"

do_compile() {
    rm -f ${B}/grubenv ${B}/boot-state.vfat
    grub-editenv ${B}/grubenv create
    grub-editenv ${B}/grubenv set "ORDER=A B" A_OK=1 A_TRY=0 B_OK=0 B_TRY=0
    mkfs.vfat -n BOOTSTATE -i 4c4c5354 -C ${B}/boot-state.vfat 8192
    mcopy -i ${B}/boot-state.vfat ${B}/grubenv ::/grubenv
}

do_deploy() {
    install -m 0644 ${B}/boot-state.vfat ${DEPLOYDIR}/lifeline-boot-state.vfat
}

addtask deploy after do_compile before do_build
