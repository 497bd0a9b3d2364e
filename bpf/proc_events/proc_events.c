/* proc_events: process exec and exit, from sched tracepoints.
 *
 * Defines given by the loader (tracedb/connectors/proc_events.py):
 *   TASK_START_BOOTTIME_OFF, TASK_EXIT_CODE_OFF, TASK_REAL_PARENT_OFF,
 *   TASK_TGID_OFF, TASK_GROUP_LEADER_OFF  byte offsets in task_struct, read from the running
 *                  kernel's BTF: the headers BCC compiles against may come
 *                  from another kernel version, so their layout is not trusted.
 *   HAVE_GROUP_DEAD  sched_process_exit carries group_dead (newer kernels).
 *   RINGBUF_PAGES    size of each ring buffer in pages (a power of two).
 *
 * Events are submitted without waking user space; the connector drains the
 * ring buffers on a timer, so a burst of forks costs no interrupts.
 * Reservations that fail (ring full) are counted in `lost`.
 */
#include <uapi/linux/ptrace.h>
#include <linux/sched.h>
#include "common/kernel.h"
#include "proc_events.h"

BPF_RINGBUF_OUTPUT(exec_ring, RINGBUF_PAGES);
BPF_RINGBUF_OUTPUT(exit_ring, RINGBUF_PAGES);
BPF_ARRAY(lost, __u64, 1);

static __always_inline void count_lost(void)
{
    int zero = 0;
    __u64 *n = lost.lookup(&zero);
    if (n)
        __sync_fetch_and_add(n, 1);
}

static __always_inline __u32 parent_tgid(void *task)
{
    void *parent = (void *)read_u64(task, TASK_REAL_PARENT_OFF);
    return parent ? read_u32(parent, TASK_TGID_OFF) : 0;
}

TRACEPOINT_PROBE(sched, sched_process_exec)
{
    struct exec_event *e = exec_ring.ringbuf_reserve(sizeof(*e));
    if (!e) {
        count_lost();
        return 0;
    }
    void *task = (void *)bpf_get_current_task();
    e->time_ns = bpf_ktime_get_boot_ns();
    e->start_boottime_ns = process_start(task);
    e->pid = bpf_get_current_pid_tgid() >> 32;
    e->ppid = parent_tgid(task);
    e->uid = (__u32)bpf_get_current_uid_gid();
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    unsigned short loc = args->data_loc_filename & 0xFFFF;
    int n = bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), (char *)args + loc);
    e->filename_len = n > 0 ? n - 1 : 0;
    exec_ring.ringbuf_submit(e, BPF_RB_NO_WAKEUP);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exit)
{
    __u64 pid_tgid = bpf_get_current_pid_tgid();
#ifdef HAVE_GROUP_DEAD
    if (!args->group_dead)
        return 0;
#else
    /* Without group_dead, take the main thread's exit as the process's. */
    if ((__u32)pid_tgid != (__u32)(pid_tgid >> 32))
        return 0;
#endif
    struct exit_event *e = exit_ring.ringbuf_reserve(sizeof(*e));
    if (!e) {
        count_lost();
        return 0;
    }
    void *task = (void *)bpf_get_current_task();
    e->time_ns = bpf_ktime_get_boot_ns();
    e->start_boottime_ns = process_start(task);
    e->pid = pid_tgid >> 32;
    e->ppid = parent_tgid(task);
    e->exit_code = (__s32)read_u32(task, TASK_EXIT_CODE_OFF);
    e->_pad = 0;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    exit_ring.ringbuf_submit(e, BPF_RB_NO_WAKEUP);
    return 0;
}
