# The appliance's mounts: data partition, boot state, bind mounts onto /var.
FILESEXTRAPATHS:prepend:lifeline := "${LIFELINE_SRCDIR}/rootfs/etc:"
