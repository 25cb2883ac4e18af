#!/bin/bash
# Do eBPF programs see every hit of a tracepoint that ftrace sees?
#
# A veth pair across two network namespaces, RPS steering every packet to CPU 1, a UDP
# flood of N packets from CPU 0. Compares, for CPU 1: /proc/net/softnet_stat "processed"
# (the kernel's own count), the hits of ftrace's net:netif_receive_skb event, and the hits
# seen by a tracer on the same tracepoint (TRACER=bpftrace: an eBPF program on the classic
# tracepoint; TRACER=perf: perf record; TRACER=none: ftrace only). ftrace's trace (with the
# task current at each hit) is left in /tmp/skipped-bpf.trace for a join by time.
#
# Needs root, iproute2, python3, and bpftrace or perf. Creates and removes netns nsA/nsB.
# Example: N=300000 TRACER=bpftrace docs/repro/skipped-bpf-programs.sh
set -u
N=${N:-300000}
TRACER=${TRACER:-bpftrace}
T=/sys/kernel/tracing
[ -d $T/events ] || mount -t tracefs tracefs $T
cleanup() {
  ip netns del nsA 2>/dev/null; ip netns del nsB 2>/dev/null
  echo 0 > $T/events/net/netif_receive_skb/enable
  [ -n "${TP:-}" ] && kill "$TP" 2>/dev/null
}
trap cleanup EXIT
ip netns add nsA; ip netns add nsB
ip link add vA netns nsA type veth peer name vB netns nsB
ip -n nsA addr add 10.99.0.1/24 dev vA; ip -n nsB addr add 10.99.0.2/24 dev vB
for ns in nsA nsB; do ip -n $ns link set lo up; done
ip -n nsA link set vA up; ip -n nsB link set vB up
ip netns exec nsB sh -c 'echo 2 > /sys/class/net/vB/queues/rx-0/rps_cpus'
ip netns exec nsB python3 -c 'import socket,time
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(("10.99.0.2",9999))
time.sleep(60)' &
RX=$!
echo mono > $T/trace_clock
echo 0 > $T/options/hash-ptr 2>/dev/null
echo 65536 > $T/buffer_size_kb; echo > $T/trace
echo 1 > $T/events/net/netif_receive_skb/enable
case $TRACER in
  bpftrace) bpftrace -e 'tracepoint:net:netif_receive_skb /str(args->name) == "vB"/ { @[cpu] = count(); }' \
              > /tmp/skipped-bpf.tracer 2>&1 & TP=$!; sleep 4 ;;
  perf) perf record -q -a -e net:netif_receive_skb -o /tmp/skipped-bpf.perf.data \
          > /tmp/skipped-bpf.tracer 2>&1 & TP=$!; sleep 3 ;;
esac
processed() { awk '{print $1}' /proc/net/softnet_stat | while read -r x; do printf '%d ' $((16#$x)); done; }
S0=$(processed)
taskset -c 0 ip netns exec nsA python3 -c "
import socket
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); m=b'x'*64
for i in range($N): s.sendto(m,('10.99.0.2',9999))"
sleep 0.5
S1=$(processed)
echo 0 > $T/events/net/netif_receive_skb/enable
if [ -n "${TP:-}" ]; then kill -INT "$TP"; wait "$TP" 2>/dev/null; TP=; fi
kill $RX 2>/dev/null
cp $T/trace /tmp/skipped-bpf.trace
echo "softnet_stat processed per CPU: before [$S0] after [$S1]"
echo "ftrace overruns: $(grep -h overrun $T/per_cpu/cpu*/stats | tr '\n' ' ')"
echo "ftrace dev=vB hits on CPU 1: $(grep '\[001\]' /tmp/skipped-bpf.trace | grep -c 'dev=vB ')"
case $TRACER in
  bpftrace) echo "bpftrace dev=vB hits: $(grep '@' /tmp/skipped-bpf.tracer | tr '\n' ' ')" ;;
  perf) echo "perf dev=vB hits on CPU 1: $(perf script -i /tmp/skipped-bpf.perf.data 2>/dev/null | grep '\[001\]' | grep -c 'dev=vB ')" ;;
esac
echo "ftrace dev=vB hits on CPU 1 by the task current then (top 5):"
grep '\[001\]' /tmp/skipped-bpf.trace | grep 'dev=vB ' | awk '{print $1}' | sed 's/-[0-9]*$//' | sort | uniq -c | sort -rn | head -5
