#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mkdir -p /var && ln -s /run /var/run
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
ip link set lo up
# This kernel's modules (from its own package: linux-image or, from 6.19, linux-modules).
if [ -f /lib/napiscope-modules/order ]; then
  for m in $(cat /lib/napiscope-modules/order); do
    insmod /lib/napiscope-modules/$m.ko 2>/tmp/insmod.err
    echo "@@MODULE $m $? $(head -c 200 /tmp/insmod.err | tr '\n' ' ')"
  done
fi
echo "@@UNAME $(uname -r)"
echo "@@STATUS-BEGIN"
napiscope status --json >/tmp/status.json
cat /tmp/status.json
echo "@@STATUS-END"
# The mode this kernel's evidence shows (status: kallsyms, backlog_napi threads, config):
# verify, top and check run in it; the host compares it with the table's expectation.
EXPECT=$(sed -n 's/^  "mode": "\([ABC]\)".*/\1/p' /tmp/status.json | head -n 1)
echo "@@MODE $EXPECT"
# `cargo xtask vm-test --whatif` boots with napiscope.whatif: record one scenario, predict
# the other mode from it (napiscope whatif), and hand the recording out base64-encoded.
if grep -q napiscope.whatif /proc/cmdline; then
  echo "@@WHATIF-BEGIN"
  napiscope record --force -o /tmp/wi.parquet -d 30 --json >/tmp/wi-rec.json 2>/tmp/wi-rec.err &
  REC=$!
  i=0
  while ! grep -q "probes attached" /tmp/wi-rec.err && [ $i -lt 600 ]; do usleep 100000; i=$((i+1)); done
  napiscope scenario loopback-rps -d 3s --json
  usleep 500000
  kill -INT $REC
  wait $REC
  echo "@@WHATIF-REC-RC $?"
  cat /tmp/wi-rec.json
  OTHER=C
  [ "$EXPECT" = C ] && OTHER=B
  echo "@@WHATIF-JSON"
  napiscope whatif --mode $OTHER /tmp/wi.parquet --json
  echo "@@WHATIF-RC $?"
  echo "@@WHATIF-PARQUET-BEGIN"
  base64 /tmp/wi.parquet
  echo "@@WHATIF-PARQUET-END"
  echo "@@WHATIF-END"
  poweroff -f
fi
echo "@@VERIFY-BEGIN"
napiscope verify --json --seconds 1 ${EXPECT:+--expect-mode $EXPECT} --keep /tmp/verify
echo "@@VERIFY-RC $?"
echo "@@VERIFY-END"
echo "@@TOP-BEGIN"
napiscope top --json -n 5 --interval 1s ${EXPECT:+--expect-mode $EXPECT} >/tmp/top.json 2>/tmp/top.err &
TOP=$!
i=0
while ! grep -q "counting on" /tmp/top.err && [ $i -lt 600 ]; do usleep 100000; i=$((i+1)); done
napiscope scenario loopback-rps -d 3s >/dev/null 2>&1
wait $TOP
RC=$?
cat /tmp/top.json
echo "@@TOP-RC $RC"
grep "not attached" /tmp/top.err | sed 's/^/@@TOP-ERR /'
echo "@@TOP-END"
echo "@@NIC-BEGIN"
# Two virtio-net NICs on QEMU's hub: eth0 sends from netns nictx, eth1 receives in the init
# netns, where top's netdev napi-get sees its NAPI instances. top's per-NAPI rows should show
# eth1's queues polled at the exit of their virtio interrupts.
# iproute2 by its path: busybox sh runs its own `ip` applet (no netns) before PATH's.
IP=/usr/sbin/ip
if [ -e /sys/class/net/eth0 ] && [ -e /sys/class/net/eth1 ]; then
  $IP netns add nictx && $IP link set eth0 netns nictx
  $IP -n nictx addr add 10.77.0.1/24 dev eth0 && $IP -n nictx link set eth0 up
  $IP addr add 10.77.0.2/24 dev eth1 && $IP link set eth1 up
  for d in eth0 eth1; do echo "@@NIC-DEV $d $(basename $(readlink /sys/class/net/$d/device 2>/dev/null || $IP netns exec nictx readlink /sys/class/net/$d/device))"; done
  napiscope top --json -n 3 --interval 1s >/tmp/nic.json 2>/tmp/nic.err &
  NTOP=$!
  i=0
  while ! grep -q "counting on" /tmp/nic.err && [ $i -lt 600 ]; do usleep 100000; i=$((i+1)); done
  $IP netns exec nictx ping -q -A -w 4 10.77.0.2 2>&1 | sed 's/^/@@NIC-PING /'
  wait $NTOP
  RC=$?
  # For the log's reader: which virtio interrupts fired, on which CPU (top names them itself).
  grep virtio /proc/interrupts | sed 's/^/@@NIC-IRQ-AFTER /'
  cat /tmp/nic.json
  echo "@@NIC-RC $RC"
else
  echo "@@NIC-NONE $(ls /sys/class/net | tr '\n' ' ')"
fi
echo "@@NIC-END"
echo "@@HOTPLUG-BEGIN"
napiscope record --force -o /tmp/hp.parquet -d 30 --json >/tmp/hp-rec.json 2>/tmp/hp-rec.err &
REC=$!
i=0
while ! grep -q "probes attached" /tmp/hp-rec.err && [ $i -lt 600 ]; do usleep 100000; i=$((i+1)); done
napiscope scenario loopback-rps --hotplug-cpu 1 -d 3s --json
usleep 500000
kill -INT $REC
wait $REC
echo "@@HOTPLUG-REC-RC $?"
cat /tmp/hp-rec.json
echo "@@HOTPLUG-CHECK"
napiscope check /tmp/hp.parquet --json --mode "${EXPECT:-auto}"
echo "@@HOTPLUG-CHECK-RC $?"
echo "@@HOTPLUG-END"
echo "@@FLOOD-BEGIN"
for rep in 1 2 3 4 5; do
  for s in loopback loopback-rps; do napiscope scenario $s --rate 0 -d 1s --json; done
done
echo "@@FLOOD-END"
poweroff -f
