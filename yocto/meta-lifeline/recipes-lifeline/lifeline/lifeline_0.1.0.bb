# nooelint: oelint.var.bbclassextend
# (Target-only recipe.)
SUMMARY = "Lifeline appliance daemons and the downloadable Linux client"
DESCRIPTION = "Builds the Lifeline Rust workspace once and splits it into one package \
               per daemon (binary, systemd unit, D-Bus policy, service user) and the client store."
HOMEPAGE = "https://lifeline.invalid/"
BUGTRACKER = "https://lifeline.invalid/issues"
CVE_PRODUCT = "lifeline"
SECTION = "net"
LICENSE = "MIT | Apache-2.0"
# nooelint: oelint.var.licenseremotefile - the workspace states its licence in Cargo.toml; the texts are the common ones
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302 \
                    file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"

# The client's window toolkit (FLTK) builds from source against X11 and Pango; its JPEG
# encoder (libjpeg-turbo, bundled) with CMake and NASM.
DEPENDS = "cairo cmake-native fontconfig glib-2.0 libx11 libxcursor libxext libxfixes libxft libxinerama libxrender nasm-native pango"

inherit cargo cargo-update-recipe-crates externalsrc systemd useradd

require lifeline-crates.inc

# The workspace is this layer's own repository.
EXTERNALSRC = "${LIFELINE_SRCDIR}"
EXTERNALSRC_BUILD = "${WORKDIR}/build"

# The daemons of firmware/daemons.toml and the client; one cargo invocation.
CARGO_BUILD_FLAGS:append = " -p lifeline-relay -p lifeline-license -p lifeline-panel -p lifeline-supervisor -p lifeline-agent"

do_install:append() {
    install -d ${D}${systemd_system_unitdir} ${D}${datadir}/dbus-1/system.d
    for unit in lifeline-relay.service lifeline-license.service lifeline-panel.service lifeline-supervisor.service; do
        install -m 0644 ${S}/rootfs/usr/lib/systemd/system/${unit} ${D}${systemd_system_unitdir}/
    done
    install -m 0644 ${S}/rootfs/usr/share/dbus-1/system.d/org.lifeline.License1.conf ${D}${datadir}/dbus-1/system.d/
    install -m 0644 ${S}/rootfs/usr/share/dbus-1/system.d/org.lifeline.Panel1.conf ${D}${datadir}/dbus-1/system.d/
    install -d ${D}${datadir}/lifeline/clients/linux-x86_64
    mv ${D}${bindir}/lifeline-agent ${D}${datadir}/lifeline/clients/linux-x86_64/lifeline-agent
}

PACKAGES =+ "${PN}-relay ${PN}-license ${PN}-panel ${PN}-supervisor ${PN}-clients"

FILES:${PN}-relay += "${bindir}/lifeline-relay ${systemd_system_unitdir}/lifeline-relay.service"
FILES:${PN}-license += "${bindir}/lifeline-license ${systemd_system_unitdir}/lifeline-license.service \
                        ${datadir}/dbus-1/system.d/org.lifeline.License1.conf"
FILES:${PN}-panel += "${bindir}/lifeline-panel ${systemd_system_unitdir}/lifeline-panel.service \
                      ${datadir}/dbus-1/system.d/org.lifeline.Panel1.conf"
FILES:${PN}-supervisor += "${bindir}/lifeline-supervisor ${systemd_system_unitdir}/lifeline-supervisor.service"
FILES:${PN}-clients += "${datadir}/lifeline/clients"

RDEPENDS:${PN}-relay = "${PN}-clients lifeline-rootfs"
RDEPENDS:${PN}-license = "dbus lifeline-rootfs"
RDEPENDS:${PN}-panel = "dbus lifeline-rootfs"
RDEPENDS:${PN}-supervisor = "dbus lifeline-rootfs polkit rauc"
# The client is served to customers and never runs on the box: its X11 libraries are not
# dependencies of the image.
SKIP_FILEDEPS:${PN}-clients = "1"
EXCLUDE_PACKAGES_FROM_SHLIBS = "${PN}-clients"

SYSTEMD_PACKAGES = "${PN}-relay ${PN}-license ${PN}-panel ${PN}-supervisor"
SYSTEMD_SERVICE:${PN}-relay = "lifeline-relay.service"
SYSTEMD_SERVICE:${PN}-license = "lifeline-license.service"
SYSTEMD_SERVICE:${PN}-panel = "lifeline-panel.service"
SYSTEMD_SERVICE:${PN}-supervisor = "lifeline-supervisor.service"

USERADD_PACKAGES = "${PN}-relay ${PN}-license ${PN}-panel ${PN}-supervisor"
USERADD_PARAM:${PN}-relay = "--system --home-dir ${localstatedir}/lib/lifeline/relay --no-create-home --shell /sbin/nologin --user-group lifeline-relay"
USERADD_PARAM:${PN}-license = "--system --home-dir ${localstatedir}/lib/lifeline/license --no-create-home --shell /sbin/nologin --user-group lifeline-license"
USERADD_PARAM:${PN}-supervisor = "--system --home-dir ${localstatedir}/lib/lifeline/supervisor --no-create-home --shell /sbin/nologin --groups systemd-journal --user-group lifeline-supervisor"
USERADD_PARAM:${PN}-panel = "--system --no-create-home --shell /sbin/nologin --groups dialout --user-group lifeline-panel"
