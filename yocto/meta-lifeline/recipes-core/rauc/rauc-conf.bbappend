# RAUC's system.conf from the repository's template, with this machine's compatible string.
# The keyring comes from the site configuration (RAUC_KEYRING_FILE), never from the layer.
FILESEXTRAPATHS:prepend:lifeline := "${LIFELINE_SRCDIR}/firmware/rauc:"

SRC_URI:append:lifeline = " file://system.conf.in"

PACKAGE_ARCH:lifeline = "${MACHINE_ARCH}"

do_install:append:lifeline() {
    sed -e 's/@COMPATIBLE@/lifeline-${LIFELINE_MODEL}/' ${WORKDIR}/system.conf.in > ${D}${sysconfdir}/rauc/system.conf
}
