/*
 * The event layout shared by the BPF probes (nsgraph.bpf.c) and the Python
 * decoder.  tracer/abi.py mirrors this file; tests/test_abi.py checks that the
 * two agree, and every live event carries its compiled size so the reader can
 * refuse a mismatched build instead of decoding garbage.
 *
 * Change this file and tracer/abi.py together, and bump NSG_ABI_VERSION.
 */
#ifndef NSGRAPH_H
#define NSGRAPH_H

#define NSG_ABI_VERSION 3

#define NSG_COMM_LEN 16
#define NSG_PATH_LEN 96
#define NSG_ARGS_LEN 128
#define NSG_CGROUP_PATH_LEN 256

/* Namespace slots of struct nsg_ns_set, in the order of tracer/abi.py NS_SLOTS. */
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

/* The system call behind an event.  A clone seen only at sched_process_fork
 * (fork/vfork system calls, kernel threads) has NSG_SYS_NONE and no flags. */
#define NSG_SYS_NONE 0
#define NSG_SYS_CLONE 1
#define NSG_SYS_CLONE3 2
#define NSG_SYS_UNSHARE 3
#define NSG_SYS_SETNS 4

/* Slots of the per-CPU counters map. */
#define NSG_CNT_RINGBUF_FULL 0   /* event dropped: ring buffer reserve failed */
#define NSG_CNT_PENDING_FULL 1   /* syscall entry not remembered: pending map full */
#define NSG_CNT_EVENTS 2         /* events handed to the buffer */
#define NSG_CNT_SLOTS 4

struct nsg_ns_set {
	__u64 id[NSG_NS_COUNT];   /* ns_common.ns_id; 0 where the kernel has none */
	__u32 inum[NSG_NS_COUNT]; /* ns_common.inum; 0 where the namespace is absent */
};

struct nsg_event {
	__u16 size;        /* sizeof(struct nsg_event) as compiled */
	__u8 version;      /* NSG_ABI_VERSION */
	__u8 kind;         /* NSG_KIND_* */
	__u8 syscall;      /* NSG_SYS_* */
	__u8 pad[3];
	__u64 ts_boot_ns;  /* bpf_ktime_get_boot_ns() at the event */
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
	char filename[NSG_PATH_LEN]; /* exec: the program's path */
	char args[NSG_ARGS_LEN];     /* exec: argv, NUL-separated, truncated to NSG_ARGS_LEN */
	struct nsg_ns_set before;    /* unshare/setns: before the call; clone: the parent's */
	struct nsg_ns_set after;     /* unshare/setns: after; clone: the child's; exec: after exec */
};

/* Value of the cgroup_paths map: cgroup v2 id -> path, recorded at mkdir, so that
 * a cgroup removed before user space looked (a `docker run --rm` container that ran
 * for a millisecond) can still be named. */
struct nsg_cgroup_path {
	char path[NSG_CGROUP_PATH_LEN];
};

#endif /* NSGRAPH_H */
