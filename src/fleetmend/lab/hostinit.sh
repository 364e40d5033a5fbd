# Runs as the first process of a lab host's new mount, UTS and PID namespaces
# (started by `unshare`), builds the host's root and becomes its sshd.
# Arguments, in order: MARKER NAME HOSTDIR LABDIR HIDE...
#   MARKER is only there to be seen in `unshare`'s command line (see procs.py);
#   HIDE are directories to mask inside the host.
# HOSTDIR holds upper/ work/ root/ and the host's sshd_config and host key;
# LABDIR holds the lab's client key (id_ed25519.pub).
set -eu
name=$2 hostdir=$3 labdir=$4
shift 4
root=$hostdir/root

mount --make-rprivate /
mount -t overlay overlay -o "lowerdir=/,upperdir=$hostdir/upper,workdir=$hostdir/work" "$root"

# Fresh /proc (this PID namespace's), /run and /tmp; the machine's devices; /sys.
mount -t proc proc "$root/proc"
# Kernel parameters are the machine's: a lab host may read them, never change them.
mount --bind -o ro "$root/proc/sys" "$root/proc/sys"
mount -t tmpfs -o mode=755,size=64m tmpfs "$root/run"
mount -t tmpfs -o mode=1777,size=256m tmpfs "$root/tmp"
mount --rbind /dev "$root/dev"
mount --bind -o ro /sys "$root/sys"

# The host's own SSH identity: only its own host key, only the lab's client key.
rm -f "$root"/etc/ssh/ssh_host_*
cp "$hostdir/ssh_host_ed25519_key" "$hostdir/ssh_host_ed25519_key.pub" "$root/etc/ssh/"
chmod 600 "$root/etc/ssh/ssh_host_ed25519_key"
mkdir -p "$root/root/.ssh" "$root/run/sshd" "$root/run/fleetmend-lab"
chmod 700 "$root/root/.ssh"
cp "$labdir/id_ed25519.pub" "$root/root/.ssh/authorized_keys"
chmod 600 "$root/root/.ssh/authorized_keys"
cp "$hostdir/sshd_config" "$root/run/fleetmend-lab/sshd_config"
# Root's shell start-up files are a fresh Debian server's, not this machine's: sshd
# runs every command through them, and a developer's (a version manager's init,
# say) would slow every command and put its tools on the host's PATH.
for f in bashrc profile; do
  if [ -f "/usr/share/base-files/dot.$f" ]; then cp "/usr/share/base-files/dot.$f" "$root/root/.$f"; fi
done
rm -f "$root/root/.bash_profile" "$root/root/.bash_login"
printf '%s\n' "$name" > "$root/etc/hostname"
hostname "$name"

# Hide the lab's state and the project checkout from inside the host.
for dir in "$@"; do
  if [ -d "$root$dir" ]; then mount -t tmpfs -o ro,size=4k,mode=755 tmpfs "$root$dir"; fi
done

mkdir "$root/run/oldroot"
cd "$root"
pivot_root . run/oldroot
cd /
umount -l /run/oldroot
rmdir /run/oldroot
exec /usr/sbin/sshd -D -e -f /run/fleetmend-lab/sshd_config
