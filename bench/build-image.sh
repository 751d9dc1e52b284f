#!/usr/bin/env bash
# Builds cube-test/busybox:latest from Debian's busybox-static when it is missing (DESIGN.md §8):
# a rootfs with bin/busybox and a symlink per applet, imported with `docker import`.
set -euo pipefail
IMAGE=cube-test/busybox:latest
docker image inspect "$IMAGE" >/dev/null 2>&1 && exit 0
[ -x /bin/busybox ] || { echo "needs busybox-static (apt-get install busybox-static)"; exit 1; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,tmp,www,etc,proc,sys,dev}
cp /bin/busybox "$root/bin/busybox"
for applet in $(/bin/busybox --list); do
  [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
echo ok > "$root/www/health"
echo 'root:x:0:0:root:/:/bin/sh' > "$root/etc/passwd"
tar -C "$root" -c . | docker import --change 'ENV PATH=/bin' - "$IMAGE" >/dev/null
echo "built $IMAGE"
