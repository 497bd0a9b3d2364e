/* Reading kernel memory at offsets taken from the running kernel's BTF
 * (passed as -D defines by the loader), shared by every program. */
#ifndef TRACEDB_COMMON_KERNEL_H
#define TRACEDB_COMMON_KERNEL_H

static __always_inline __u64 read_u64(void *base, int offset)
{
    __u64 v = 0;
    bpf_probe_read_kernel(&v, sizeof(v), (char *)base + offset);
    return v;
}

static __always_inline __u32 read_u32(void *base, int offset)
{
    __u32 v = 0;
    bpf_probe_read_kernel(&v, sizeof(v), (char *)base + offset);
    return v;
}

static __always_inline __u16 read_u16(void *base, int offset)
{
    __u16 v = 0;
    bpf_probe_read_kernel(&v, sizeof(v), (char *)base + offset);
    return v;
}

/* The process's start time (its thread group leader's): upid is made of it,
 * and a thread's own start time would split one process into several. Needs
 * TASK_GROUP_LEADER_OFF and TASK_START_BOOTTIME_OFF. */
static __always_inline __u64 process_start(void *task)
{
    return read_u64((void *)read_u64(task, TASK_GROUP_LEADER_OFF), TASK_START_BOOTTIME_OFF);
}

#endif
