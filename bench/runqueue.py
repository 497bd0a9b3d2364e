"""Run-queue latency of a load's processes: how long each of their threads,
once runnable (woken, or preempted while running), waited for a CPU.

A small BPF program of the benchmarks' own, on the sched:sched_wakeup and
sched:sched_switch tracepoints, keeps a log2 histogram in microseconds for the
threads whose command name is one of the given ones (at most 4, 15 bytes
each). It is how the latency a tracer adds to a paced load was traced to the
decoder holding a CPU (bench/README.md): a wakeup that waits shows here,
whatever the tracer's priority.
"""

from __future__ import annotations

from dataclasses import dataclass

PROGRAM = r"""
#define COMM_LEN 16
struct comm { char name[COMM_LEN]; };
BPF_HASH(runnable_since, u32, u64, 65536);
BPF_ARRAY(waits, u64, 64);  /* by log2 of the wait in us */
BPF_ARRAY(names, struct comm, 4);

static __always_inline int watched(const char *comm)
{
    for (int i = 0; i < 4; i++) {
        int k = i;
        struct comm *watched_comm = names.lookup(&k);
        if (!watched_comm || !watched_comm->name[0])
            return 0;
        const char *name = watched_comm->name;
        int same = 1;
        for (int c = 0; c < COMM_LEN; c++) {
            if (name[c] != comm[c]) { same = 0; break; }
            if (!name[c]) break;
        }
        if (same)
            return 1;
    }
    return 0;
}

static __always_inline void runnable(u32 tid)
{
    u64 now = bpf_ktime_get_ns();
    runnable_since.update(&tid, &now);
}

/* A copy on the stack: the verifier refuses variable offsets into the tracepoint's context. */
#define COMM_OF(field, copy) char copy[COMM_LEN]; __builtin_memcpy(copy, field, COMM_LEN)

TRACEPOINT_PROBE(sched, sched_wakeup)
{
    COMM_OF(args->comm, comm);
    if (watched(comm))
        runnable(args->pid);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_switch)
{
    COMM_OF(args->prev_comm, prev_comm);
    if (args->prev_state == 0 && watched(prev_comm))  /* preempted: still runnable */
        runnable(args->prev_pid);
    u32 next = args->next_pid;
    u64 *since = runnable_since.lookup(&next);
    if (!since)
        return 0;
    int slot = bpf_log2l((bpf_ktime_get_ns() - *since) / 1000 + 1);
    runnable_since.delete(&next);
    u64 *n = waits.lookup(&slot);
    if (n)
        __sync_fetch_and_add(n, 1);
    return 0;
}
"""


@dataclass
class Waits:
    """Wakeups of one measurement, by upper bound of their wait (us, powers of two)."""

    by_bound_us: dict[int, int]

    @property
    def total(self) -> int:
        return sum(self.by_bound_us.values())

    def share_over(self, us: int) -> float:
        """% of the waits longer than about `us` (a power of two)."""
        return 100 * sum(n for bound, n in self.by_bound_us.items() if bound > us) / max(1, self.total)

    def longest_us(self) -> int:
        return max((bound for bound, n in self.by_bound_us.items() if n), default=0)


class RunQueueLatency:
    """The program, attached from construction until close(); measure() resets and reads its histogram."""

    def __init__(self, comms: list[str]):
        from bcc import BPF

        if not 0 < len(comms) <= 4 or any(len(c.encode()) > 15 for c in comms):
            raise ValueError("1 to 4 command names of at most 15 bytes")
        self.bpf = BPF(text=PROGRAM, cflags=["-Wno-ignored-attributes"])
        names = self.bpf[b"names"]
        for i, comm in enumerate(comms):
            leaf = names.Leaf()
            leaf.name = comm.encode()
            names[names.Key(i)] = leaf

    def reset(self) -> None:
        self.bpf[b"waits"].clear()
        self.bpf[b"runnable_since"].clear()

    def read(self) -> Waits:
        """The waits since the last reset; a wait in slot s lasted less than 2**s us."""
        return Waits({2 ** key.value: leaf.value for key, leaf in self.bpf[b"waits"].items() if leaf.value})

    def close(self) -> None:
        self.bpf.cleanup()
