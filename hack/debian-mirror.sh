#!/usr/bin/env bash
# Prints the Debian mirror this machine's apt uses (deb822 sources first, then sources.list), for debootstrap.
uri="$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | head -1 | awk '{print $2}')"
[ -n "$uri" ] || uri="$(grep -hs '^deb ' /etc/apt/sources.list | head -1 | awk '{print $2}')"
echo "${uri:-http://deb.debian.org/debian}"
