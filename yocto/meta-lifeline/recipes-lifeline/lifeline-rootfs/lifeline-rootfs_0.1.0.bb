# nooelint: oelint.var.bbclassextend,oelint.var.mandatoryvar.SRC_URI
# (Target-only recipe; its sources are this repository, see S.)
SUMMARY = "Lifeline root file system overlay"
DESCRIPTION = "The files of the repository's rootfs/ overlay that belong to no single \
               daemon: D-Bus and polkit policy, network and firewall defaults, journald limits, the data \
               partition layout, and the configuration defaults."
HOMEPAGE = "https://lifeline.invalid/"
BUGTRACKER = "https://lifeline.invalid/issues"
CVE_PRODUCT = "lifeline"
SECTION = "base"
LICENSE = "MIT | Apache-2.0"
# nooelint: oelint.var.licenseremotefile - the workspace states its licence in Cargo.toml; the texts are the common ones
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302 \
                    file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"

inherit allarch

S = "${LIFELINE_SRCDIR}/rootfs"

# The panel model differs between machines.
PACKAGE_ARCH = "${MACHINE_ARCH}"

do_configure[noexec] = "1"
do_compile[noexec] = "1"

do_install() {
    install -d ${D}${datadir}/dbus-1/system.d ${D}${sysconfdir}/dbus-1/system.d \
        ${D}${datadir}/polkit-1/rules.d ${D}${nonarch_libdir}/systemd/network \
        ${D}${sysconfdir}/systemd/journald.conf.d ${D}${systemd_system_unitdir}/systemd-networkd.service.d \
        ${D}${nonarch_libdir}/tmpfiles.d ${D}${datadir}/lifeline/etc/nftables.d \
        ${D}/data ${D}/boot/state ${D}${localstatedir}/lib/lifeline
    install -m 0644 ${S}/usr/share/dbus-1/system.d/org.lifeline.Supervisor1.conf ${D}${datadir}/dbus-1/system.d/
    install -m 0644 ${S}/etc/dbus-1/system.d/lifeline-rauc.conf ${D}${sysconfdir}/dbus-1/system.d/
    install -m 0644 ${S}/usr/share/polkit-1/rules.d/50-lifeline-supervisor.rules ${D}${datadir}/polkit-1/rules.d/
    install -m 0644 ${S}/usr/lib/systemd/network/90-lifeline-dhcp.network ${D}${nonarch_libdir}/systemd/network/
    install -m 0644 ${S}/etc/systemd/journald.conf.d/lifeline.conf ${D}${sysconfdir}/systemd/journald.conf.d/
    install -m 0644 ${S}/usr/lib/systemd/system/systemd-networkd.service.d/lifeline-data.conf \
        ${D}${systemd_system_unitdir}/systemd-networkd.service.d/
    install -m 0644 ${S}/etc/nftables.conf ${D}${sysconfdir}/nftables.conf
    install -m 0644 ${S}/usr/lib/tmpfiles.d/lifeline.conf ${D}${nonarch_libdir}/tmpfiles.d/
    install -m 0644 ${S}/usr/share/lifeline/etc/relay.toml ${D}${datadir}/lifeline/etc/
    install -m 0644 ${S}/usr/share/lifeline/etc/supervisor.toml ${D}${datadir}/lifeline/etc/
    install -m 0644 ${S}/usr/share/lifeline/etc/nftables.d/README ${D}${datadir}/lifeline/etc/nftables.d/
    sed -e 's/@PANEL_MODEL@/${LIFELINE_PANEL_MODEL}/' ${S}/usr/share/lifeline/etc/panel.toml \
        > ${D}${datadir}/lifeline/etc/panel.toml
    ln -sf /data/lifeline/etc ${D}${sysconfdir}/lifeline
}

FILES:${PN} += "${datadir}/dbus-1 ${datadir}/polkit-1 ${nonarch_libdir}/tmpfiles.d ${nonarch_libdir}/systemd/network \
                ${systemd_system_unitdir}/systemd-networkd.service.d \
                ${datadir}/lifeline/etc \
                /data /boot/state ${localstatedir}/lib/lifeline"

RDEPENDS:${PN} = "nftables polkit rauc systemd"
