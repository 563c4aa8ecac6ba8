/*
 * nsgraph probes: namespace events from clone/clone3/unshare/setns, plus the
 * fork/exec/exit events that let a model follow processes.
 *
 * No kernel struct is dereferenced by member name: the OFF_* constants are byte
 * offsets read from the running kernel's BTF by tracer/probes.py, because the
 * installed header tree may belong to another kernel.  No kprobes: only
 * tracepoints and raw tracepoints, which exist on every kernel we support.
 *
 * Build-time switches (-D) set by tracer/probes.py:
 *   NSG_USE_RINGBUF     1: BPF ring buffer, 0: perf buffer (kernels < 5.8)
 *   NSG_RINGBUF_PAGES   ring buffer size in pages
 *   NSG_WAKEUP_EVENTS   wake the reader once per this many events per CPU
 *   NSG_PROC_EVENTS     1: also emit plain forks, exec and exit
 *   NSG_HAVE_NS_ID      1: ns_common has ns_id (Linux 6.18+)
 *   NSG_HAVE_TIME_NS, NSG_HAVE_CGROUP_NS
 */
#include "nsgraph.h"

/* Syscall tracepoint arguments are unsigned long; ret is long. */
#define NSG_CLONE_NS_FLAGS (0x00020000ULL | 0x02000000ULL | 0x04000000ULL | 0x08000000ULL | \
                            0x10000000ULL | 0x20000000ULL | 0x40000000ULL | 0x00000080ULL)

#if NSG_USE_RINGBUF
BPF_RINGBUF_OUTPUT(events, NSG_RINGBUF_PAGES);
BPF_PERCPU_ARRAY(unwoken_events, u32, 1);
#else
BPF_PERF_OUTPUT(events);
BPF_PERCPU_ARRAY(scratch, struct nsg_event, 1);
#endif

BPF_PERCPU_ARRAY(counters, u64, NSG_CNT_SLOTS);

/* What a syscall entry saw, kept until its exit (or, for clone, the fork). */
struct nsg_pending {
	u64 flags;
	s32 fd;
	u8 syscall;
	u8 pad[3];
	struct nsg_ns_set before;
};
BPF_HASH(pending, u32, struct nsg_pending, NSG_PENDING_ENTRIES);

/* LRU: old cgroups' paths make room for new ones on their own. */
BPF_TABLE("lru_hash", u64, struct nsg_cgroup_path, cgroup_paths, NSG_CGROUP_PATHS);

static __always_inline void count(u32 slot)
{
	u64 *value = counters.lookup(&slot);
	if (value)
		*value += 1;
}

static __always_inline u64 read_u64(const void *addr)
{
	u64 value = 0;
	bpf_probe_read_kernel(&value, sizeof(value), addr);
	return value;
}

static __always_inline u32 read_u32(const void *addr)
{
	u32 value = 0;
	bpf_probe_read_kernel(&value, sizeof(value), addr);
	return value;
}

static __always_inline void *read_ptr(const void *addr)
{
	void *value = NULL;
	bpf_probe_read_kernel(&value, sizeof(value), addr);
	return value;
}

static __always_inline void read_ns(const void *ns_struct, u32 common_offset,
                                    struct nsg_ns_set *set, int slot)
{
	if (!ns_struct) {
		set->inum[slot] = 0;
		set->id[slot] = 0;
		return;
	}
	const char *common = (const char *)ns_struct + common_offset;
	set->inum[slot] = read_u32(common + OFF_NS_COMMON_INUM);
#if NSG_HAVE_NS_ID
	set->id[slot] = read_u64(common + OFF_NS_COMMON_NS_ID);
#else
	set->id[slot] = 0;
#endif
}

/* The struct pid of a task and its level (depth of its pid namespace). */
static __always_inline const char *task_pid_struct(const void *task, u32 *level)
{
	const char *pid = read_ptr((const char *)task + OFF_TASK_THREAD_PID);
	*level = pid ? read_u32(pid + OFF_PID_LEVEL) : 0;
	return pid;
}

/* The pid number of `pid` in the namespace at `level`. */
static __always_inline u32 pid_nr_at(const char *pid, u32 level)
{
	if (!pid)
		return 0;
	return read_u32(pid + OFF_PID_NUMBERS + (u64)level * SIZEOF_UPID + OFF_UPID_NR);
}

static __always_inline void read_ns_set(const void *task, struct nsg_ns_set *set)
{
	const char *t = task;
	const char *nsproxy = read_ptr(t + OFF_TASK_NSPROXY);
	u32 level = 0;
	const char *pid = task_pid_struct(task, &level);
	const void *active_pid_ns = pid ? read_ptr(pid + OFF_PID_NUMBERS + (u64)level * SIZEOF_UPID + OFF_UPID_NS) : NULL;
	const char *cred = read_ptr(t + OFF_TASK_REAL_CRED);

	read_ns(active_pid_ns, OFF_PID_NAMESPACE_NS, set, NSG_NS_PID);
	read_ns(cred ? read_ptr(cred + OFF_CRED_USER_NS) : NULL, OFF_USER_NAMESPACE_NS, set, NSG_NS_USER);
	if (!nsproxy) {
		/* An exiting task has dropped its nsproxy: record absence, not zeros by accident. */
		set->inum[NSG_NS_MNT] = set->inum[NSG_NS_PID_FOR_CHILDREN] = set->inum[NSG_NS_NET] = 0;
		set->inum[NSG_NS_UTS] = set->inum[NSG_NS_IPC] = set->inum[NSG_NS_CGROUP] = 0;
		set->inum[NSG_NS_TIME] = set->inum[NSG_NS_TIME_FOR_CHILDREN] = 0;
		set->id[NSG_NS_MNT] = set->id[NSG_NS_PID_FOR_CHILDREN] = set->id[NSG_NS_NET] = 0;
		set->id[NSG_NS_UTS] = set->id[NSG_NS_IPC] = set->id[NSG_NS_CGROUP] = 0;
		set->id[NSG_NS_TIME] = set->id[NSG_NS_TIME_FOR_CHILDREN] = 0;
		return;
	}
	read_ns(read_ptr(nsproxy + OFF_NSPROXY_MNT_NS), OFF_MNT_NAMESPACE_NS, set, NSG_NS_MNT);
	read_ns(read_ptr(nsproxy + OFF_NSPROXY_PID_NS_FOR_CHILDREN), OFF_PID_NAMESPACE_NS, set, NSG_NS_PID_FOR_CHILDREN);
	read_ns(read_ptr(nsproxy + OFF_NSPROXY_NET_NS), OFF_NET_NS, set, NSG_NS_NET);
	read_ns(read_ptr(nsproxy + OFF_NSPROXY_UTS_NS), OFF_UTS_NAMESPACE_NS, set, NSG_NS_UTS);
	read_ns(read_ptr(nsproxy + OFF_NSPROXY_IPC_NS), OFF_IPC_NAMESPACE_NS, set, NSG_NS_IPC);
#if NSG_HAVE_CGROUP_NS
	read_ns(read_ptr(nsproxy + OFF_NSPROXY_CGROUP_NS), OFF_CGROUP_NAMESPACE_NS, set, NSG_NS_CGROUP);
#else
	read_ns(NULL, 0, set, NSG_NS_CGROUP);
#endif
#if NSG_HAVE_TIME_NS
	read_ns(read_ptr(nsproxy + OFF_NSPROXY_TIME_NS), OFF_TIME_NAMESPACE_NS, set, NSG_NS_TIME);
	read_ns(read_ptr(nsproxy + OFF_NSPROXY_TIME_NS_FOR_CHILDREN), OFF_TIME_NAMESPACE_NS, set, NSG_NS_TIME_FOR_CHILDREN);
#else
	read_ns(NULL, 0, set, NSG_NS_TIME);
	read_ns(NULL, 0, set, NSG_NS_TIME_FOR_CHILDREN);
#endif
}

/* Fill the fields every event has, for `task` (the current task for syscalls). */
static __always_inline void fill_common(struct nsg_event *e, u8 kind, const void *task)
{
	const char *t = task;
	u32 level = 0;
	const char *pid = task_pid_struct(task, &level);
	const char *parent = read_ptr(t + OFF_TASK_REAL_PARENT);

	e->size = sizeof(*e);
	e->version = NSG_ABI_VERSION;
	e->kind = kind;
	e->syscall = NSG_SYS_NONE;
	e->pad[0] = e->pad[1] = e->pad[2] = 0;
	e->ts_boot_ns = bpf_ktime_get_boot_ns();
	e->pid = read_u32(t + OFF_TASK_TGID);
	e->tid = read_u32(t + OFF_TASK_PID);
	e->ppid = parent ? read_u32(parent + OFF_TASK_TGID) : 0;
	e->uid = (u32)bpf_get_current_uid_gid();
	e->vpid = pid_nr_at(pid, level);
	e->child_pid = 0;
	e->child_vpid = 0;
	e->fd = 0;
	e->exit_code = 0;
	e->args_len = 0;
	e->flags = 0;
	e->ret = 0;
	/* The current task's cgroup; a forked child starts in its parent's. */
	e->cgroup_id = bpf_get_current_cgroup_id();
	bpf_probe_read_kernel(e->comm, sizeof(e->comm), t + OFF_TASK_COMM);
	e->filename[0] = 0;
	e->args[0] = 0;
}

#if NSG_USE_RINGBUF
static __always_inline struct nsg_event *event_reserve(void)
{
	return events.ringbuf_reserve(sizeof(struct nsg_event));
}

/*
 * Batch wake-ups: one per event would cost the traced workload 15-30 %.  Each CPU
 * wakes the reader every NSG_WAKEUP_EVENTS events; the reader's short poll
 * timeout picks up the rest, which bounds the latency of a lone event.
 */
static __always_inline void event_submit(void *ctx, struct nsg_event *e)
{
	int zero = 0;
	u64 flags = BPF_RB_NO_WAKEUP;
	u32 *unwoken = unwoken_events.lookup(&zero);
	if (unwoken) {
		*unwoken += 1;
		if (*unwoken >= NSG_WAKEUP_EVENTS) {
			*unwoken = 0;
			flags = BPF_RB_FORCE_WAKEUP;
		}
	}
	events.ringbuf_submit(e, flags);
	count(NSG_CNT_EVENTS);
}
#else
static __always_inline struct nsg_event *event_reserve(void)
{
	int zero = 0;
	return scratch.lookup(&zero);
}

static __always_inline void event_submit(void *ctx, struct nsg_event *e)
{
	events.perf_submit(ctx, e, sizeof(struct nsg_event));
	count(NSG_CNT_EVENTS);
}
#endif

static __always_inline int remember_entry(u8 syscall, u64 flags, s32 fd, int with_namespaces)
{
	u32 tid = (u32)bpf_get_current_pid_tgid();
	struct nsg_pending entry = {};
	entry.flags = flags;
	entry.fd = fd;
	entry.syscall = syscall;
	if (with_namespaces)
		read_ns_set((const void *)bpf_get_current_task(), &entry.before);
	if (pending.update(&tid, &entry) != 0)
		count(NSG_CNT_PENDING_FULL);
	return 0;
}

/* unshare and setns: emit before and after sets at syscall exit. */
static __always_inline int emit_ns_change(void *ctx, u8 kind, long ret)
{
	u32 tid = (u32)bpf_get_current_pid_tgid();
	struct nsg_pending *entry = pending.lookup(&tid);
	if (!entry)
		return 0;
	struct nsg_event *e = event_reserve();
	if (!e) {
		count(NSG_CNT_RINGBUF_FULL);
		pending.delete(&tid);
		return 0;
	}
	const void *task = (const void *)bpf_get_current_task();
	fill_common(e, kind, task);
	e->syscall = entry->syscall;
	e->flags = entry->flags;
	e->fd = entry->fd;
	e->ret = ret;
	__builtin_memcpy(&e->before, &entry->before, sizeof(e->before));
	read_ns_set(task, &e->after);
	pending.delete(&tid);
	event_submit(ctx, e);
	return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_unshare)
{
	return remember_entry(NSG_SYS_UNSHARE, args->unshare_flags, 0, 1);
}

TRACEPOINT_PROBE(syscalls, sys_exit_unshare)
{
	return emit_ns_change(args, NSG_KIND_UNSHARE, args->ret);
}

TRACEPOINT_PROBE(syscalls, sys_enter_setns)
{
	/* The tracepoint calls the nstype argument "flags". */
	return remember_entry(NSG_SYS_SETNS, (u32)args->flags, (s32)args->fd, 1);
}

TRACEPOINT_PROBE(syscalls, sys_exit_setns)
{
	return emit_ns_change(args, NSG_KIND_SETNS, args->ret);
}

TRACEPOINT_PROBE(syscalls, sys_enter_clone)
{
#if !NSG_PROC_EVENTS
	if (!(args->clone_flags & NSG_CLONE_NS_FLAGS))
		return 0;
#endif
	return remember_entry(NSG_SYS_CLONE, args->clone_flags, 0, 0);
}

TRACEPOINT_PROBE(syscalls, sys_enter_clone3)
{
	u64 flags = 0;
	/* struct clone_args starts with the u64 flags. */
	bpf_probe_read_user(&flags, sizeof(flags), (const void *)args->uargs);
#if !NSG_PROC_EVENTS
	if (!(flags & NSG_CLONE_NS_FLAGS))
		return 0;
#endif
	return remember_entry(NSG_SYS_CLONE3, flags, 0, 0);
}

/* A successful clone is emitted at sched_process_fork; exit only reports failures. */
static __always_inline int clone_exit(void *ctx, long ret)
{
	u32 tid = (u32)bpf_get_current_pid_tgid();
	struct nsg_pending *entry = pending.lookup(&tid);
	if (!entry)
		return 0;
	if (ret < 0) {
		struct nsg_event *e = event_reserve();
		if (!e) {
			count(NSG_CNT_RINGBUF_FULL);
		} else {
			const void *task = (const void *)bpf_get_current_task();
			fill_common(e, NSG_KIND_CLONE, task);
			e->syscall = entry->syscall;
			e->flags = entry->flags;
			e->ret = ret;
			read_ns_set(task, &e->before);
			__builtin_memcpy(&e->after, &e->before, sizeof(e->after));
			event_submit(ctx, e);
		}
	}
	pending.delete(&tid);
	return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_clone)
{
	return clone_exit(args, args->ret);
}

TRACEPOINT_PROBE(syscalls, sys_exit_clone3)
{
	return clone_exit(args, args->ret);
}

/*
 * Runs in the parent after copy_process() and before the child is woken, so the
 * event is in the buffer before anything the child does.
 */
RAW_TRACEPOINT_PROBE(sched_process_fork)
{
	const char *parent = (const char *)ctx->args[0];
	const char *child = (const char *)ctx->args[1];
	u32 parent_tid = read_u32(parent + OFF_TASK_PID);
	struct nsg_pending *entry = pending.lookup(&parent_tid);
	u64 flags = entry ? entry->flags : 0;
	u32 child_tid = read_u32(child + OFF_TASK_PID);
	u32 child_tgid = read_u32(child + OFF_TASK_TGID);

	/* New threads matter only if they bring namespaces of their own. */
	if (child_tid != child_tgid && !(flags & NSG_CLONE_NS_FLAGS))
		return 0;
#if !NSG_PROC_EVENTS
	if (!(flags & NSG_CLONE_NS_FLAGS))
		return 0;
#endif
	struct nsg_event *e = event_reserve();
	if (!e) {
		count(NSG_CNT_RINGBUF_FULL);
		return 0;
	}
	fill_common(e, NSG_KIND_CLONE, parent);
	e->syscall = entry ? entry->syscall : NSG_SYS_NONE;
	e->flags = flags;
	u32 parent_level = 0, child_level = 0;
	task_pid_struct(parent, &parent_level);
	const char *child_pid = task_pid_struct(child, &child_level);
	e->child_pid = child_tgid;
	e->child_vpid = pid_nr_at(child_pid, child_level);
	/* What clone() returns in the parent: the child's pid in the parent's pid namespace. */
	e->ret = pid_nr_at(child_pid, parent_level);
	read_ns_set(parent, &e->before);
	read_ns_set(child, &e->after);
	event_submit(ctx, e);
	return 0;
}

#if NSG_PROC_EVENTS
TRACEPOINT_PROBE(sched, sched_process_exec)
{
	struct nsg_event *e = event_reserve();
	if (!e) {
		count(NSG_CNT_RINGBUF_FULL);
		return 0;
	}
	const void *task = (const void *)bpf_get_current_task();
	fill_common(e, NSG_KIND_EXEC, task);
	e->ret = args->old_pid;
	TP_DATA_LOC_READ_STR(e->filename, filename, sizeof(e->filename));
	/* argv of the new program: the join-session summary names the command that ran. */
	const char *mm = read_ptr((const char *)task + OFF_TASK_MM);
	if (mm) {
		u64 arg_start = read_u64(mm + OFF_MM_ARG_START);
		u64 arg_end = read_u64(mm + OFF_MM_ARG_END);
		u64 len = arg_end > arg_start ? arg_end - arg_start : 0;
		e->args_len = (u32)len;
		if (len > NSG_ARGS_LEN)
			len = NSG_ARGS_LEN;
		if (len > 0 && bpf_probe_read_user(e->args, len & (NSG_ARGS_LEN * 2 - 1), (const void *)arg_start) != 0)
			e->args_len = 0;
	}
	/* exec moves the task into its time_for_children namespace. */
	read_ns_set(task, &e->after);
	__builtin_memset(&e->before, 0, sizeof(e->before));
	event_submit(args, e);
	return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exit)
{
	const char *task = (const char *)bpf_get_current_task();
	const char *signal = read_ptr(task + OFF_TASK_SIGNAL);
	/* Only the last thread of a process ends the process. */
	if (signal && read_u32(signal + OFF_SIGNAL_STRUCT_LIVE) != 0)
		return 0;
	struct nsg_event *e = event_reserve();
	if (!e) {
		count(NSG_CNT_RINGBUF_FULL);
		return 0;
	}
	fill_common(e, NSG_KIND_EXIT, task);
	e->exit_code = (s32)read_u32(task + OFF_TASK_EXIT_CODE);
	__builtin_memset(&e->before, 0, sizeof(e->before));
	__builtin_memset(&e->after, 0, sizeof(e->after));
	event_submit(args, e);
	return 0;
}
#endif

/* Only the v2 hierarchy (id 0): its ids are what bpf_get_current_cgroup_id() returns. */
TRACEPOINT_PROBE(cgroup, cgroup_mkdir)
{
	if (args->root != 0)
		return 0;
	u64 id = args->id;
	struct nsg_cgroup_path value = {};
	TP_DATA_LOC_READ_STR(value.path, path, sizeof(value.path));
	cgroup_paths.update(&id, &value);
	return 0;
}
