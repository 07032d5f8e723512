# The A/B selection in firmware/grub/grub.cfg needs these modules in the GRUB image.
GRUB_BUILDIN:append:lifeline = " loadenv regexp test echo search search_label sleep reboot serial terminal gzio"
