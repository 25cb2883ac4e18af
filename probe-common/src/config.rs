//! What userspace writes into the programs' read-only data before loading them: the field
//! offsets of the running kernel (from tracefs and BTF) and the run-time settings.

use crate::NET_RX_SOFTIRQ;

/// Byte offsets of the tracepoint fields the programs read. They are taken from the running
/// kernel's tracefs `format` files at load time (never assumed), and written into the
/// programs' read-only data before loading.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TpOffsets {
    pub softirq_vec: u32,
    pub napi_napi: u32,
    pub napi_dev_name: u32,
    pub napi_work: u32,
    pub napi_budget: u32,
    pub switch_prev_comm: u32,
    pub switch_prev_pid: u32,
    pub switch_prev_state: u32,
    pub switch_next_comm: u32,
    pub switch_next_pid: u32,
    pub waking_comm: u32,
    pub waking_pid: u32,
    pub waking_target_cpu: u32,
    pub wakeup_comm: u32,
    pub wakeup_pid: u32,
    pub wakeup_target_cpu: u32,
    pub ipi_cpu: u32,
    pub ipi_callsite: u32,
    pub ipi_callback: u32,
    pub csdq_cpu: u32,
    pub csdq_func: u32,
    pub csdq_csd: u32,
    pub csdf_func: u32,
    pub csdf_csd: u32,
    pub idle_cpu: u32,
    pub rx_skb: u32,
    pub rx_len: u32,
    pub rx_name: u32,
    pub rxexit_ret: u32,
    pub rcv_skb: u32,
    pub rcv_len: u32,
    pub rcv_name: u32,
    /// netif_receive_skb_entry's record; napi_gro_receive_entry and
    /// netif_receive_skb_list_entry share its class (net_dev_rx_verbose_template).
    pub devrx_skb: u32,
    pub devrx_len: u32,
    pub devrx_name: u32,
    pub cpuhp_enter_cpu: u32,
    pub cpuhp_enter_target: u32,
    pub cpuhp_enter_idx: u32,
    pub cpuhp_exit_cpu: u32,
    pub cpuhp_exit_state: u32,
    pub cpuhp_exit_idx: u32,
    pub cpuhp_exit_ret: u32,
    pub irq_entry_irq: u32,
    pub _pad: u32,
}

/// Byte offsets of the kernel struct members the BTF programs read (`skb->len`,
/// `skb->dev->name`, `napi->dev->name`, and task fields), from the running kernel's BTF at
/// load time. Those programs are attached only when their group of offsets was found.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    pub skb_len: u32,
    pub skb_dev: u32,
    pub netdev_name: u32,
    pub napi_dev: u32,
    /// task_struct.pid and .comm: with `task_found` = 1 every program reads the current
    /// task's pid and comm with two loads from bpf_get_current_task_btf() instead of the
    /// pid_tgid and comm helpers.
    pub task_pid: u32,
    pub task_comm: u32,
    pub task_found: u32,
    /// task_struct.exit_state and task_cpu()'s field (thread_info.cpu or cpu), for the
    /// sched tp_btf programs.
    pub task_exit_state: u32,
    pub task_cpu: u32,
    /// napi_struct.napi_id and .irq (v6.8+), for per-NAPI rows. 0 where the kernel has no
    /// such member (then the programs do not read it).
    pub napi_id: u32,
    pub napi_irq: u32,
    pub _pad: u32,
}

/// Run-time settings written into the programs' read-only data before loading.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Bit N set: record CPU N. 1024 CPUs.
    pub cpu_mask: [u64; 16],
    /// Bit V set: record softirq raise/entry/exit of vector V (context tracking sees all).
    pub softirq_mask: u32,
    /// Wake the reader only once this many bytes wait in the ring buffer (it also polls on
    /// a timer). A wake-up per event would run the scheduler's tracepoints inside ours, and
    /// the kernel skips nested tracepoint programs.
    pub wakeup_bytes: u32,
    /// 1: send events to the ring buffer (`record`).
    pub events: u32,
    /// 1: aggregate CpuCounters in the kernel (`top`).
    pub counters: u32,
    /// 1: softirq context belongs to the task (PREEMPT_RT: a task can be preempted inside
    /// a softirq run, and from v6.18, 3253cb49cbad, another task's run can start before it
    /// ends). sched_switch then keeps each task's "in softirq" state; 0: a softirq never
    /// spans a switch, so one still set at a switch is a missed exit and is reset.
    pub softirq_per_task: u32,
    pub _pad: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            cpu_mask: [u64::MAX; 16],
            softirq_mask: 1 << NET_RX_SOFTIRQ,
            wakeup_bytes: 1 << 20,
            events: 1,
            counters: 0,
            softirq_per_task: 0,
            _pad: 0,
        }
    }
}

const _: () = assert!(core::mem::size_of::<Settings>() == 152);

const _: () = assert!(core::mem::size_of::<KernelOffsets>() == 48);
