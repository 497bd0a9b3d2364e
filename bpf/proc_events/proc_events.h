/* Events that cross from the proc_events BPF program to user space.
 * Included by proc_events.c (BCC) and, in a test, by a C program built with
 * gcc that prints sizes and offsets for the Python mirror
 * (tracedb/connectors/proc_events.py) to be checked against. */
#ifndef TRACEDB_PROC_EVENTS_H
#define TRACEDB_PROC_EVENTS_H

#include <linux/types.h>

#define PROC_COMM_LEN 16
#define EXEC_FILENAME_LEN 256

struct exec_event {
    __u64 time_ns;            /* CLOCK_BOOTTIME when the exec completed */
    __u64 start_boottime_ns;  /* task->start_boottime: the process's start, for upid */
    __u32 pid;
    __u32 ppid;
    __u32 uid;
    __u32 filename_len;       /* bytes of filename written, without the NUL */
    char comm[PROC_COMM_LEN];
    char filename[EXEC_FILENAME_LEN];
};

struct exit_event {
    __u64 time_ns;            /* CLOCK_BOOTTIME when the last thread exited */
    __u64 start_boottime_ns;
    __u32 pid;
    __u32 ppid;
    __s32 exit_code;          /* raw task->exit_code: status << 8 | core flag 0x80 | signal */
    __u32 _pad;
    char comm[PROC_COMM_LEN];
};

#endif
