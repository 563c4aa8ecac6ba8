/*
 * The record layout shared by the BPF probes (nsgraph.bpf.c) and the Python
 * decoder.  tracer/abi.py mirrors this file; tests/test_abi.py checks that the
 * two agree, and every live record carries its size and the ABI version so the
 * reader can refuse a mismatched build instead of decoding garbage.
 *
 * Change this file and tracer/abi.py together, and bump NSG_ABI_VERSION.
 *
 * A record is a struct nsg_event, then `nchanges` struct nsg_ns_change, then,
 * for exec records only, a struct nsg_exec_tail.  `size` is the whole record.
 * A plain fork and an exit are a struct nsg_brief alone (NSG_INFO_BRIEF): the
 * fields such a record has, in 48 bytes, so that with the ring buffer's 8-byte
 * header it takes less than one cache line of the ring.  Both structs start with
 * the same 16 bytes (size, version, kind, ..., info, ts_ns).
 * A record names only the namespaces that changed (the consumer knows the rest):
 *   clone    the child's namespaces that differ from its parent's (none for a
 *            plain fork, whose record is the bare struct nsg_event);
 *   unshare, setns   the caller's namespaces whose pointers the call changed;
 *   exec     the time namespace, when exec moved the task into its
 *            time_for_children namespace (nothing otherwise);
 *   exit     none.
 */
#ifndef NSGRAPH_H
#define NSGRAPH_H

#define NSG_ABI_VERSION 6

#define NSG_COMM_LEN 16
#define NSG_PATH_LEN 96
#define NSG_ARGS_LEN 128
#define NSG_CGROUP_PATH_LEN 256

/* Namespace slots, in the order of tracer/abi.py NS_SLOTS. */
#define NSG_NS_MNT 0
#define NSG_NS_PID 1
#define NSG_NS_PID_FOR_CHILDREN 2
#define NSG_NS_NET 3
#define NSG_NS_UTS 4
#define NSG_NS_IPC 5
#define NSG_NS_USER 6
#define NSG_NS_CGROUP 7
#define NSG_NS_TIME 8
#define NSG_NS_TIME_FOR_CHILDREN 9
#define NSG_NS_COUNT 10

/* Event kinds. */
#define NSG_KIND_CLONE 1
#define NSG_KIND_UNSHARE 2
#define NSG_KIND_SETNS 3
#define NSG_KIND_EXEC 4
#define NSG_KIND_EXIT 5

/* The system call behind an event.  Every clone is seen at sched_process_fork;
 * one that made namespaces is named after the call in its parent's registers
 * (clone or clone3); plain forks, fork/vfork, kernel threads, and kernels or
 * architectures where the registers cannot be read have NSG_SYS_NONE.  A failed
 * clone made nothing and has no record. */
#define NSG_SYS_NONE 0
#define NSG_SYS_CLONE 1
#define NSG_SYS_CLONE3 2
#define NSG_SYS_UNSHARE 3
#define NSG_SYS_SETNS 4

/* Bits of nsg_event.info (and nsg_brief.info). */
#define NSG_INFO_BRIEF 1        /* a plain fork or an exit: the record is a struct nsg_brief */
#define NSG_INFO_FLAGS_SEEN 2   /* a clone whose flags are the system call's own (read from the
                                   parent's registers); otherwise flags holds what the fork showed:
                                   CLONE_NEW* of the namespaces it made, and CLONE_PARENT */
#define NSG_INFO_CLONE_PARENT 4 /* a brief fork whose child is its grandparent's (CLONE_PARENT) */

/* Slots of the per-CPU counters map. */
#define NSG_CNT_RINGBUF_FULL 0   /* record dropped: ring buffer reserve failed */
#define NSG_CNT_PENDING_FULL 1   /* syscall entry not remembered: no room to keep it */
#define NSG_CNT_EVENTS 2         /* records handed to the buffer */
#define NSG_CNT_SLOTS 4

struct nsg_event {
	__u16 size;        /* bytes in the whole record */
	__u8 version;      /* NSG_ABI_VERSION */
	__u8 kind;         /* NSG_KIND_* */
	__u8 syscall;      /* NSG_SYS_* */
	__u8 nchanges;     /* struct nsg_ns_change entries after this struct */
	__u16 info;        /* NSG_INFO_* */
	__u64 ts_ns;       /* bpf_ktime_get_ns() (CLOCK_MONOTONIC) at the event */
	__u32 pid;         /* thread group id, host view */
	__u32 tid;         /* thread id, host view */
	__u32 ppid;        /* real parent's thread group id, host view */
	__u32 uid;         /* kernel (host) uid */
	__u32 vpid;        /* pid in the task's own pid namespace */
	__u32 child_pid;   /* clone: the child's pid, host view */
	__u32 child_vpid;  /* clone: the child's pid in its own pid namespace */
	__s32 fd;          /* setns: the fd argument */
	__s32 exit_code;   /* exit: task->exit_code (wait status) */
	__u32 args_len;    /* exec: full length of the argument block (args holds at most NSG_ARGS_LEN) */
	__u64 flags;       /* clone/clone3/unshare flags; setns nstype */
	__s64 ret;         /* return value; clone: child pid as the caller sees it */
	__u64 cgroup_id;   /* cgroup v2 id of the task at the event (its cgroupfs inode) */
	char comm[NSG_COMM_LEN];
};

/* A plain fork (the child has its parent's namespaces) or an exit: every record
 * the probes send on the machine's hottest paths, so it carries only what the
 * consumer needs and is half a struct nsg_event (the ring buffer's cost per record
 * is mostly the cache lines it writes). */
struct nsg_brief {
	__u16 size;        /* sizeof(struct nsg_brief) */
	__u8 version;      /* NSG_ABI_VERSION */
	__u8 kind;         /* NSG_KIND_CLONE or NSG_KIND_EXIT */
	__u8 syscall;      /* NSG_SYS_NONE */
	__u8 nchanges;     /* 0 */
	__u16 info;        /* NSG_INFO_BRIEF, NSG_INFO_CLONE_PARENT */
	__u64 ts_ns;       /* CLOCK_MONOTONIC at the event (a fork: the child's start_time) */
	__u32 pid;         /* thread group id, host view */
	__u32 tid;         /* thread id, host view */
	__u32 child_pid;   /* fork: the child's pid, host view */
	__s32 exit_code;   /* exit: task->exit_code (wait status) */
	char comm[NSG_COMM_LEN];
};

/* One namespace slot that changed: before (clone: the parent's) and after
 * (clone: the child's).  inum 0: not known (the slot was not read); id 0: the
 * kernel has no ns_id (before Linux 6.18). */
struct nsg_ns_change {
	__u64 id_before;
	__u64 id_after;
	__u32 inum_before;
	__u32 inum_after;
	__u8 slot;         /* NSG_NS_* */
	__u8 pad[7];
};

struct nsg_exec_tail {
	char filename[NSG_PATH_LEN]; /* the program's path */
	char args[NSG_ARGS_LEN];     /* argv, NUL-separated, truncated to NSG_ARGS_LEN */
};

#define NSG_RECORD_MAX (sizeof(struct nsg_event) + NSG_NS_COUNT * sizeof(struct nsg_ns_change) + \
                        sizeof(struct nsg_exec_tail))

/* Value of the cgroup_paths map: cgroup v2 id -> path, recorded at mkdir, so that
 * a cgroup removed before user space looked (a `docker run --rm` container that ran
 * for a millisecond) can still be named. */
struct nsg_cgroup_path {
	char path[NSG_CGROUP_PATH_LEN];
};

#endif /* NSGRAPH_H */
