# The appliance's mounts (fstab: data partition, boot state, bind mounts onto /var) and
# hosts (localhost resolves: the relay's default site name).
FILESEXTRAPATHS:prepend:lifeline := "${LIFELINE_SRCDIR}/rootfs/etc:"
