/*
 * nsgraph probes: namespace events from clone/clone3/unshare/setns, plus the
 * fork/exec/exit events that let a model follow processes.  Clones are seen at
 * sched_process_fork alone (no clone/clone3 syscall probe: the fork shows which
 * namespaces the clone made, and the parent's registers which call it was).
 *
 * Cost is the design constraint: these programs run on every fork, exec and
 * exit of the machine.  So each does only what its record needs:
 *   - a fork whose child got its parent's nsproxy and user namespace (pointer
 *     compares) sends a brief record (who forked whom; the consumer knows the
 *     parent's namespaces and derives the child's), and nothing at all when
 *     process events are off;
 *   - unshare/setns compare namespace pointers before and after the call and
 *     read inode numbers and ids only for the slots that changed (before values
 *     only for the slots the flags named: the old namespace may be freed once
 *     the call returns);
 *   - exec reads namespaces only when the task has a pending switch into its
 *     time_for_children namespace; exit reads none, and only the last thread of
 *     a process reports;
 *   - the current task's fields are plain loads through its BTF pointer
 *     (bpf_get_current_task_btf, 5.11+: the verifier makes them fault-safe, a few
 *     ns each) rather than bpf_probe_read_kernel calls (70 ns each on a 6.18 VM);
 *     other memory is read with one bpf_probe_read_kernel per span where the
 *     kernel's layout puts the fields side by side.
 * bench/bench_probe_cost.py measures every program with the kernel's counters.
 *
 * No kernel struct is dereferenced by member name: the OFF_* constants are byte
 * offsets read from the running kernel's BTF by tracer/probes.py, because the
 * installed header tree may belong to another kernel.
 *
 * Build-time switches (-D) set by tracer/probes.py:
 *   NSG_USE_RINGBUF       1: BPF ring buffer, 0: perf buffer (kernels < 5.8)
 *   NSG_RINGBUF_PAGES     ring buffer size in pages
 *   NSG_WAKEUP_EVENTS     wake the reader once per this many records per CPU
 *   NSG_PROC_EVENTS       1: also report plain forks, exec and exit
 *   NSG_TASK_STORAGE      1: keep the rare per-task state in task storage, and read
 *                         the current task through its BTF pointer (both 5.11+);
 *                         0: an LRU hash keyed by thread id, and bpf_probe_read_kernel
 *   NSG_CALL_ARRAY        1: syscall entries wait for their exit in a direct-mapped
 *                         array claimed by compare-and-swap (5.12+); 0: a hash
 *   NSG_EXIT_GROUP_DEAD   1: sched_process_exit carries group_dead (6.x kernels)
 *   NSG_TP_BTF            1: sched_process_fork/exec/exit are plain functions that
 *                         tracer/kernel/tpbtf.py attaches as tp_btf (typed arguments,
 *                         no trace record built); 0: a raw tracepoint and two tracepoints
 *   NSG_HOOKS_FENTRY      1: unshare/setns are hooked with fentry/fexit
 *                         instead of syscall tracepoints (where trampolines load)
 *   NSG_HAVE_NS_ID        1: ns_common has ns_id (Linux 6.18+)
 *   NSG_HAVE_TIME_NS, NSG_HAVE_CGROUP_NS
 *   NSG_HAVE_CLONE_REGS   1: bpf_task_pt_regs (5.15+) and this architecture's syscall
 *                         registers (OFF_PT_REGS_SYSNR/ARG0, NSG_NR_CLONE/CLONE3) known
 *   NSG_COMMON_START/NSG_COMMON_LEN: the span of ns_common holding inum (and ns_id)
 *   NSG_NSPROXY_START/NSG_NSPROXY_LEN: the span of struct nsproxy holding its pointers
 */
#include "nsgraph.h"

/* Namespace flags of clone/clone3/unshare (and setns's nstype). */
#define NSG_CLONE_NEWTIME 0x00000080ULL
#define NSG_CLONE_NEWNS 0x00020000ULL
#define NSG_CLONE_NEWCGROUP 0x02000000ULL
#define NSG_CLONE_NEWUTS 0x04000000ULL
#define NSG_CLONE_NEWIPC 0x08000000ULL
#define NSG_CLONE_NEWUSER 0x10000000ULL
#define NSG_CLONE_NEWPID 0x20000000ULL
#define NSG_CLONE_NEWNET 0x40000000ULL
#define NSG_CLONE_NS_FLAGS (NSG_CLONE_NEWTIME | NSG_CLONE_NEWNS | NSG_CLONE_NEWCGROUP | NSG_CLONE_NEWUTS | \
                            NSG_CLONE_NEWIPC | NSG_CLONE_NEWUSER | NSG_CLONE_NEWPID | NSG_CLONE_NEWNET)
#define NSG_CLONE_PARENT 0x00008000ULL

#define NSG_ALL_SLOTS ((1 << NSG_NS_COUNT) - 1)
#define SLOT(s) (1 << (s))

#define NSG_SCRATCH_SIZE 1024   /* >= NSG_RECORD_MAX, a power of two for the verifier's bounds */

#if NSG_USE_RINGBUF
BPF_RINGBUF_OUTPUT(events, NSG_RINGBUF_PAGES);
BPF_PERCPU_ARRAY(unwoken_events, u32, 1);
#else
BPF_PERF_OUTPUT(events);
#endif

/* Where records with a variable part are put together before they are copied out. */
struct nsg_scratch {
	char data[NSG_SCRATCH_SIZE];
};
BPF_PERCPU_ARRAY(scratch, struct nsg_scratch, 1);

BPF_PERCPU_ARRAY(counters, u64, NSG_CNT_SLOTS);

static __always_inline void count(u32 slot)
{
	u64 *value = counters.lookup(&slot);
	if (value)
		*value += 1;
}

/*
 * A global gate, read on hot paths to skip work that cannot be needed:
 *   GATE_DIVERGED   tasks whose children will not get their own namespaces: their
 *                   pid_for_children is not their pid namespace, or their
 *                   time_for_children not their time namespace (after unshare or
 *                   setns of pid/time); zero means every fork and exec is plain.
 *   GATE_READER_ASLEEP  set by the reader before it sleeps on an empty ring
 *                   (tracer/kernel/probes.py); the first record after that wakes it.
 */
#define GATE_DIVERGED 0
#define GATE_READER_ASLEEP 1
BPF_ARRAY(gates, u64, 2);

/*
 * What an unshare's or setns's entry saw, kept until its exit, by thread id.
 */
struct nsg_call {
	u64 tid;            /* the owner thread (call table: and the claim time, see call_begin); 0: free */
	u64 flags;
	s32 fd;
	u8 syscall;
	u8 pad;
	u16 read_mask;      /* slots whose values were read at entry into id/inum */
	u64 ptr[NSG_NS_COUNT];
	u64 id[NSG_NS_COUNT];
	u32 inum[NSG_NS_COUNT];
};

#if NSG_CALL_ARRAY
/*
 * A direct-mapped table: slot tid % NSG_PENDING_ENTRIES, claimed with one
 * compare-and-swap of its owner word (5.12+) and freed with another.  A few ns,
 * where a preallocated hash's update and delete cost 300 ns on a 6.18 VM.
 *
 * The owner word is the thread id (low half) and the claim's time in units of
 * 2^30 ns (high half).  An entry whose exit never comes (a call in flight while
 * the probes attached: its exit ran before the exit probe was there) would hold
 * its slot forever; a slot held for NSG_STALE_UNITS units (2-3 s) is taken over,
 * and counted, since a call still running that long loses its record.  Two
 * threads in a namespace call at once whose ids share a slot: the second call is
 * not remembered, and counted (NSG_CNT_PENDING_FULL) like a full table.
 */
#define NSG_STALE_UNITS 2
BPF_ARRAY(calls, struct nsg_call, NSG_PENDING_ENTRIES);

/* A slot to fill for the current thread's call; NULL when it is taken. */
static __always_inline struct nsg_call *call_begin(u32 tid)
{
	u32 index = tid & (NSG_PENDING_ENTRIES - 1);
	struct nsg_call *c = calls.lookup(&index);
	if (!c)
		return NULL;
	u64 units = bpf_ktime_get_ns() >> 30;
	u64 mine = (units << 32) | tid;
	u64 owner = __sync_val_compare_and_swap(&c->tid, 0, mine);
	if (owner == 0)
		return c;
	/* Its own slot still held (an entry whose exit never came; calls do not nest),
	 * or another thread's, taken over once it is stale. */
	if ((u32)owner != tid && units - (owner >> 32) < NSG_STALE_UNITS)
		return NULL;
	if (__sync_val_compare_and_swap(&c->tid, owner, mine) != owner)
		return NULL;
	if ((u32)owner != tid)
		count(NSG_CNT_PENDING_FULL);
	return c;
}

static __always_inline int call_commit(u32 tid, struct nsg_call *c)
{
	return 0;
}

static __always_inline struct nsg_call *call_find(u32 tid)
{
	u32 index = tid & (NSG_PENDING_ENTRIES - 1);
	struct nsg_call *c = calls.lookup(&index);
	return c && (u32)c->tid == tid ? c : NULL;
}

/* Whether the entry read so far is still this thread's (not taken over meanwhile). */
static __always_inline int call_still_mine(u32 tid, struct nsg_call *c)
{
	return (u32)c->tid == tid;
}

static __always_inline void call_end(u32 tid, struct nsg_call *c)
{
	u64 owner = c->tid;
	if ((u32)owner == tid)
		__sync_val_compare_and_swap(&c->tid, owner, 0);
}
#else
/* Kernels before 5.12 (no compare-and-swap): a preallocated hash, filled from scratch. */
BPF_HASH(calls, u32, struct nsg_call, NSG_PENDING_ENTRIES);
BPF_PERCPU_ARRAY(call_scratch, struct nsg_call, 1);

static __always_inline struct nsg_call *call_begin(u32 tid)
{
	int zero = 0;
	struct nsg_call *c = call_scratch.lookup(&zero);
	if (c)
		c->tid = tid;
	return c;
}

static __always_inline int call_commit(u32 tid, struct nsg_call *c)
{
	return calls.update(&tid, c);
}

static __always_inline struct nsg_call *call_find(u32 tid)
{
	return calls.lookup(&tid);
}

static __always_inline int call_still_mine(u32 tid, struct nsg_call *c)
{
	return 1;
}

static __always_inline void call_end(u32 tid, struct nsg_call *c)
{
	calls.delete(&tid);
}
#endif

/*
 * A task whose children (and next exec) will not get its own pid/time
 * namespaces: rare (after unshare or setns of pid or time), so kept in task
 * storage made only then (an LRU hash before 5.11).  GATE_DIVERGED counts them.
 */
struct nsg_task {
	u8 time_switch;     /* time != time_for_children: exec (and fork) switch the time namespace */
	u8 pid_switch;      /* pid_for_children != the active pid namespace: forks change pid */
	u8 pad[2];
	u32 time_inum;      /* the time namespace exec will leave */
	u64 time_id;
};

#if NSG_TASK_STORAGE
BPF_TASK_STORAGE(task_state, struct nsg_task);

static __always_inline struct nsg_task *task_get(int create)
{
	return task_state.task_storage_get(bpf_get_current_task_btf(), 0,
	                                   create ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0);
}
#else
BPF_TABLE("lru_hash", u32, struct nsg_task, task_state, NSG_PENDING_ENTRIES);

static __always_inline struct nsg_task *task_get(int create)
{
	u32 tid = (u32)bpf_get_current_pid_tgid();
	struct nsg_task *t = task_state.lookup(&tid);
	if (t || !create)
		return t;
	struct nsg_task fresh = {};
	task_state.update(&tid, &fresh);
	return task_state.lookup(&tid);
}
#endif

static __always_inline u32 current_tid(void)
{
	return (u32)bpf_get_current_pid_tgid();
}

/* LRU: old cgroups' paths make room for new ones on their own. */
BPF_TABLE("lru_hash", u64, struct nsg_cgroup_path, cgroup_paths, NSG_CGROUP_PATHS);

static __always_inline u64 gate(u32 slot)
{
	u64 *value = gates.lookup(&slot);
	return value ? *value : 0;
}

static __always_inline void gate_add(u32 slot, s64 delta)
{
	u64 *value = gates.lookup(&slot);
	if (value)
		__sync_fetch_and_add(value, delta);
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

/*
 * The current task, and loads from memory reached from it.  With NSG_TASK_STORAGE
 * (5.11+) the task is a BTF pointer and CUR_* are plain loads, which the verifier
 * checks against the kernel's BTF and makes fault-safe; the offsets must then name
 * real members (they do: every one comes from BTF).  Elsewhere, helper reads.
 * Only addresses derived from cur_task() by constant offsets may go through CUR_*.
 */
#if NSG_TASK_STORAGE
static __always_inline const char *cur_task(void)
{
	return (const char *)bpf_get_current_task_btf();
}
#define CUR_U32(addr) (*(const u32 *)(addr))
#define CUR_U64(addr) (*(const u64 *)(addr))
#define CUR_PTR(addr) (*(const char *const *)(addr))
#else
static __always_inline const char *cur_task(void)
{
	return (const char *)bpf_get_current_task();
}
#define CUR_U32(addr) read_u32(addr)
#define CUR_U64(addr) read_u64(addr)
#define CUR_PTR(addr) ((const char *)read_ptr(addr))
#endif

/* Offset of struct ns_common inside the namespace struct of a slot. */
static __always_inline u32 slot_ns_offset(int slot)
{
	switch (slot) {
	case NSG_NS_MNT: return OFF_MNT_NAMESPACE_NS;
	case NSG_NS_PID: case NSG_NS_PID_FOR_CHILDREN: return OFF_PID_NAMESPACE_NS;
	case NSG_NS_NET: return OFF_NET_NS;
	case NSG_NS_UTS: return OFF_UTS_NAMESPACE_NS;
	case NSG_NS_IPC: return OFF_IPC_NAMESPACE_NS;
	case NSG_NS_USER: return OFF_USER_NAMESPACE_NS;
#if NSG_HAVE_CGROUP_NS
	case NSG_NS_CGROUP: return OFF_CGROUP_NAMESPACE_NS;
#endif
#if NSG_HAVE_TIME_NS
	case NSG_NS_TIME: case NSG_NS_TIME_FOR_CHILDREN: return OFF_TIME_NAMESPACE_NS;
#endif
	}
	return 0;
}

/* inode number and ns_id of one namespace, in one read where they sit together. */
static __always_inline void ns_value(u64 ns, int slot, u64 *id, u32 *inum)
{
	*id = 0;
	*inum = 0;
	if (!ns)
		return;
	const char *common = (const char *)ns + slot_ns_offset(slot);
	char span[NSG_COMMON_LEN];
	if (bpf_probe_read_kernel(span, sizeof(span), common + NSG_COMMON_START) != 0)
		return;
	*inum = *(u32 *)(span + OFF_NS_COMMON_INUM - NSG_COMMON_START);
#if NSG_HAVE_NS_ID
	*id = *(u64 *)(span + OFF_NS_COMMON_NS_ID - NSG_COMMON_START);
#endif
}

/*
 * ns_value() of one of the current task's own slots (not PID: that one is its pid
 * struct's), by plain loads down the BTF-typed chain task -> nsproxy (or cred) ->
 * namespace -> ns_common: a few ns, where bpf_probe_read_kernel costs ~70.  `ptr`
 * is the slot's pointer as cur_ns_ptrs() read it, for kernels without BTF loads.
 * `slot` must be a constant (the callers' loops are unrolled), so each slot is its
 * own straight chain of typed loads for the verifier.
 */
static __always_inline void cur_slot_value(const char *task, int slot, u64 ptr, u64 *id, u32 *inum)
{
#if NSG_TASK_STORAGE
	const char *ns = NULL;
	const char *nsproxy = CUR_PTR(task + OFF_TASK_NSPROXY);
	const char *cred;
	switch (slot) {
	case NSG_NS_MNT: ns = nsproxy ? CUR_PTR(nsproxy + OFF_NSPROXY_MNT_NS) : NULL; break;
	case NSG_NS_PID_FOR_CHILDREN: ns = nsproxy ? CUR_PTR(nsproxy + OFF_NSPROXY_PID_NS_FOR_CHILDREN) : NULL; break;
	case NSG_NS_NET: ns = nsproxy ? CUR_PTR(nsproxy + OFF_NSPROXY_NET_NS) : NULL; break;
	case NSG_NS_UTS: ns = nsproxy ? CUR_PTR(nsproxy + OFF_NSPROXY_UTS_NS) : NULL; break;
	case NSG_NS_IPC: ns = nsproxy ? CUR_PTR(nsproxy + OFF_NSPROXY_IPC_NS) : NULL; break;
#if NSG_HAVE_CGROUP_NS
	case NSG_NS_CGROUP: ns = nsproxy ? CUR_PTR(nsproxy + OFF_NSPROXY_CGROUP_NS) : NULL; break;
#endif
#if NSG_HAVE_TIME_NS
	case NSG_NS_TIME: ns = nsproxy ? CUR_PTR(nsproxy + OFF_NSPROXY_TIME_NS) : NULL; break;
	case NSG_NS_TIME_FOR_CHILDREN: ns = nsproxy ? CUR_PTR(nsproxy + OFF_NSPROXY_TIME_NS_FOR_CHILDREN) : NULL; break;
#endif
	case NSG_NS_USER:
		cred = CUR_PTR(task + OFF_TASK_REAL_CRED);
		ns = cred ? CUR_PTR(cred + OFF_CRED_USER_NS) : NULL;
		break;
	default:
		ns_value(ptr, slot, id, inum);
		return;
	}
	*id = 0;
	*inum = 0;
	/* The chain just read must be the namespace cur_ns_ptrs() saw (it is: only this
	 * task changes its own nsproxy and credentials). */
	if (!ns || (u64)ns != ptr)
		return;
	const char *common = ns + slot_ns_offset(slot);
	*inum = CUR_U32(common + OFF_NS_COMMON_INUM);
#if NSG_HAVE_NS_ID
	*id = CUR_U64(common + OFF_NS_COMMON_NS_ID);
#endif
#else
	ns_value(ptr, slot, id, inum);
#endif
}

/* The struct pid of a task and its level (depth of its pid namespace). */
static __always_inline const char *task_pid_struct(const void *task, u32 *level)
{
	const char *pid = read_ptr((const char *)task + OFF_TASK_THREAD_PID);
	*level = pid ? read_u32(pid + OFF_PID_LEVEL) : 0;
	return pid;
}

/* The same for the current task, through its BTF pointer where there is one. */
static __always_inline const char *cur_pid_struct(const char *task, u32 *level)
{
	const char *pid = CUR_PTR(task + OFF_TASK_THREAD_PID);
	*level = pid ? CUR_U32(pid + OFF_PID_LEVEL) : 0;
	return pid;
}

/*
 * The current task's command name.  Through its BTF pointer: two loads (the kernel
 * keeps comm NUL-padded), where bpf_get_current_comm() costs ~50 ns.
 */
static __always_inline void cur_comm(char *dst, const char *task)
{
#if NSG_TASK_STORAGE
	*(u64 *)dst = CUR_U64(task + OFF_TASK_COMM);
	*(u64 *)(dst + 8) = CUR_U64(task + OFF_TASK_COMM + 8);
#else
	bpf_get_current_comm(dst, NSG_COMM_LEN);
#endif
}

/* The current task's uid (kernel view), as bpf_get_current_uid_gid() gives it. */
static __always_inline u32 cur_uid(const char *task)
{
#if NSG_TASK_STORAGE
	const char *cred = CUR_PTR(task + OFF_TASK_CRED);
	return cred ? CUR_U32(cred + OFF_CRED_UID) : 0;
#else
	return (u32)bpf_get_current_uid_gid();
#endif
}

/* The upid of `pid` at `level` (a variable index: a helper read either way). */
struct nsg_upid {
	char bytes[SIZEOF_UPID];
};

static __always_inline void pid_upid_at(const char *pid, u32 level, u32 *nr, u64 *ns)
{
	struct nsg_upid upid = {};
	*nr = 0;
	*ns = 0;
	if (!pid || bpf_probe_read_kernel(&upid, sizeof(upid), pid + OFF_PID_NUMBERS + (u64)level * SIZEOF_UPID) != 0)
		return;
	*nr = *(u32 *)(upid.bytes + OFF_UPID_NR);
	*ns = *(u64 *)(upid.bytes + OFF_UPID_NS);
}

/*
 * The current task's pid in its own pid namespace.  Levels 0-3 (the host, a
 * container, nested ones) are plain loads at constant offsets; deeper, a helper read.
 */
static __always_inline u32 cur_vpid(const char *task)
{
	u32 level = 0, nr = 0;
	u64 ns = 0;
	const char *pid = cur_pid_struct(task, &level);
	if (!pid)
		return 0;
#if NSG_TASK_STORAGE
	switch (level) {
	case 0: return CUR_U32(pid + OFF_PID_NUMBERS + OFF_UPID_NR);
	case 1: return CUR_U32(pid + OFF_PID_NUMBERS + SIZEOF_UPID + OFF_UPID_NR);
	case 2: return CUR_U32(pid + OFF_PID_NUMBERS + 2 * SIZEOF_UPID + OFF_UPID_NR);
	case 3: return CUR_U32(pid + OFF_PID_NUMBERS + 3 * SIZEOF_UPID + OFF_UPID_NR);
	}
#endif
	pid_upid_at(pid, level, &nr, &ns);
	return nr;
}

#define NSPROXY_WORD(off) ((off - NSG_NSPROXY_START) / 8)

/*
 * The namespace objects of a task, one pointer per slot: the nsproxy's (read in
 * one go), the user namespace of its credentials and, with want_pid, its active
 * pid namespace (which unshare and setns never change).
 */
static __always_inline void task_ns_ptrs(const char *task, u64 *ptr, int want_pid)
{
	const char *nsproxy = read_ptr(task + OFF_TASK_NSPROXY);
	u64 block[NSG_NSPROXY_LEN / 8] = {};
	if (nsproxy)
		bpf_probe_read_kernel(block, sizeof(block), nsproxy + NSG_NSPROXY_START);
	ptr[NSG_NS_MNT] = block[NSPROXY_WORD(OFF_NSPROXY_MNT_NS)];
	ptr[NSG_NS_PID_FOR_CHILDREN] = block[NSPROXY_WORD(OFF_NSPROXY_PID_NS_FOR_CHILDREN)];
	ptr[NSG_NS_NET] = block[NSPROXY_WORD(OFF_NSPROXY_NET_NS)];
	ptr[NSG_NS_UTS] = block[NSPROXY_WORD(OFF_NSPROXY_UTS_NS)];
	ptr[NSG_NS_IPC] = block[NSPROXY_WORD(OFF_NSPROXY_IPC_NS)];
#if NSG_HAVE_CGROUP_NS
	ptr[NSG_NS_CGROUP] = block[NSPROXY_WORD(OFF_NSPROXY_CGROUP_NS)];
#else
	ptr[NSG_NS_CGROUP] = 0;
#endif
#if NSG_HAVE_TIME_NS
	ptr[NSG_NS_TIME] = block[NSPROXY_WORD(OFF_NSPROXY_TIME_NS)];
	ptr[NSG_NS_TIME_FOR_CHILDREN] = block[NSPROXY_WORD(OFF_NSPROXY_TIME_NS_FOR_CHILDREN)];
#else
	ptr[NSG_NS_TIME] = ptr[NSG_NS_TIME_FOR_CHILDREN] = 0;
#endif
	const char *cred = read_ptr(task + OFF_TASK_REAL_CRED);
	ptr[NSG_NS_USER] = cred ? (u64)read_ptr(cred + OFF_CRED_USER_NS) : 0;
	ptr[NSG_NS_PID] = 0;
	if (want_pid) {
		u32 level = 0, nr = 0;
		const char *pid = task_pid_struct(task, &level);
		pid_upid_at(pid, level, &nr, &ptr[NSG_NS_PID]);
	}
}

/* The same for the current task: plain loads where it has a BTF pointer. */
static __always_inline void cur_ns_ptrs(const char *task, u64 *ptr, int want_pid)
{
#if NSG_TASK_STORAGE
	const char *nsproxy = CUR_PTR(task + OFF_TASK_NSPROXY);
	if (nsproxy) {
		ptr[NSG_NS_MNT] = CUR_U64(nsproxy + OFF_NSPROXY_MNT_NS);
		ptr[NSG_NS_PID_FOR_CHILDREN] = CUR_U64(nsproxy + OFF_NSPROXY_PID_NS_FOR_CHILDREN);
		ptr[NSG_NS_NET] = CUR_U64(nsproxy + OFF_NSPROXY_NET_NS);
		ptr[NSG_NS_UTS] = CUR_U64(nsproxy + OFF_NSPROXY_UTS_NS);
		ptr[NSG_NS_IPC] = CUR_U64(nsproxy + OFF_NSPROXY_IPC_NS);
#if NSG_HAVE_CGROUP_NS
		ptr[NSG_NS_CGROUP] = CUR_U64(nsproxy + OFF_NSPROXY_CGROUP_NS);
#else
		ptr[NSG_NS_CGROUP] = 0;
#endif
#if NSG_HAVE_TIME_NS
		ptr[NSG_NS_TIME] = CUR_U64(nsproxy + OFF_NSPROXY_TIME_NS);
		ptr[NSG_NS_TIME_FOR_CHILDREN] = CUR_U64(nsproxy + OFF_NSPROXY_TIME_NS_FOR_CHILDREN);
#else
		ptr[NSG_NS_TIME] = ptr[NSG_NS_TIME_FOR_CHILDREN] = 0;
#endif
	} else {
		/* An exiting task has dropped its nsproxy: no namespace to name. */
		ptr[NSG_NS_MNT] = ptr[NSG_NS_PID_FOR_CHILDREN] = ptr[NSG_NS_NET] = ptr[NSG_NS_UTS] = 0;
		ptr[NSG_NS_IPC] = ptr[NSG_NS_CGROUP] = ptr[NSG_NS_TIME] = ptr[NSG_NS_TIME_FOR_CHILDREN] = 0;
	}
	const char *cred = CUR_PTR(task + OFF_TASK_REAL_CRED);
	ptr[NSG_NS_USER] = cred ? CUR_U64(cred + OFF_CRED_USER_NS) : 0;
	ptr[NSG_NS_PID] = 0;
	if (want_pid) {
		u32 level = 0, nr = 0;
		const char *pid = cur_pid_struct(task, &level);
		pid_upid_at(pid, level, &nr, &ptr[NSG_NS_PID]);
	}
#else
	task_ns_ptrs(task, ptr, want_pid);
#endif
}

/* The slots a set of CLONE_NEW* flags can change (unshare, clone). */
static __always_inline u16 flag_slots(u64 flags)
{
	u16 slots = 0;
	if (flags & NSG_CLONE_NEWNS)
		slots |= SLOT(NSG_NS_MNT);
	if (flags & NSG_CLONE_NEWPID)
		slots |= SLOT(NSG_NS_PID_FOR_CHILDREN);
	if (flags & NSG_CLONE_NEWNET)
		slots |= SLOT(NSG_NS_NET);
	if (flags & NSG_CLONE_NEWUTS)
		slots |= SLOT(NSG_NS_UTS);
	if (flags & NSG_CLONE_NEWIPC)
		slots |= SLOT(NSG_NS_IPC);
	if (flags & NSG_CLONE_NEWUSER)
		slots |= SLOT(NSG_NS_USER);
	if (flags & NSG_CLONE_NEWCGROUP)
		slots |= SLOT(NSG_NS_CGROUP);
	if (flags & NSG_CLONE_NEWTIME)
		slots |= SLOT(NSG_NS_TIME_FOR_CHILDREN);
	return slots;
}

/* The slots setns can change: nstype 0 (an nsfs fd of any type) can change any. */
static __always_inline u16 setns_slots(u64 nstype)
{
	if (!(nstype & NSG_CLONE_NS_FLAGS))
		return NSG_ALL_SLOTS & ~SLOT(NSG_NS_PID);
	u16 slots = flag_slots(nstype);
	if (nstype & NSG_CLONE_NEWTIME)
		slots |= SLOT(NSG_NS_TIME);
	return slots;
}

#if NSG_USE_RINGBUF
/*
 * Batch wake-ups: one per record would cost the traced workload 15-30 %.  Each
 * CPU wakes the reader every NSG_WAKEUP_EVENTS records; the reader's short poll
 * timeout picks up the rest, which bounds the latency of a lone event.
 */
static __always_inline u64 wake_flag(void)
{
	int zero = 0;
	u32 *unwoken = unwoken_events.lookup(&zero);
	if (unwoken) {
		*unwoken += 1;
		if (*unwoken >= NSG_WAKEUP_EVENTS) {
			*unwoken = 0;
			return BPF_RB_FORCE_WAKEUP;
		}
	}
	return BPF_RB_NO_WAKEUP;
}

/*
 * A reader that found the ring empty for a while sleeps (seconds) instead of polling
 * every 20 ms, with GATE_READER_ASLEEP set: the first record after that wakes it, so a
 * lone event is read at once and an idle machine costs the reader nothing.  Checked
 * after the record's commit, an atomic exchange that orders it before this load: either
 * the reader's last look at the ring (after it set the gate) saw the record, or this
 * sees the gate.  The wake-up rides on an empty record discarded at once.
 */
static __always_inline void wake_sleeping_reader(void)
{
	u32 slot = GATE_READER_ASLEEP;
	u64 *asleep = gates.lookup(&slot);
	if (asleep && *asleep) {
		*asleep = 0;
		void *nudge = events.ringbuf_reserve(8);
		if (nudge)
			events.ringbuf_discard(nudge, BPF_RB_FORCE_WAKEUP);
	}
}
#endif

/* A brief record, written in place in the ring buffer. */
static __always_inline struct nsg_brief *brief_reserve(void)
{
#if NSG_USE_RINGBUF
	struct nsg_brief *e = events.ringbuf_reserve(sizeof(struct nsg_brief));
#else
	int zero = 0;
	struct nsg_brief *e = (struct nsg_brief *)scratch.lookup(&zero);
#endif
	if (!e)
		count(NSG_CNT_RINGBUF_FULL);
	return e;
}

static __always_inline void brief_submit(void *ctx, struct nsg_brief *e)
{
#if NSG_USE_RINGBUF
	events.ringbuf_submit(e, wake_flag());
	wake_sleeping_reader();
#else
	events.perf_submit(ctx, e, sizeof(struct nsg_brief));
#endif
	count(NSG_CNT_EVENTS);
}

/* A record put together in scratch: copied out with its real size. */
static __always_inline char *record_start(void)
{
	int zero = 0;
	return (char *)scratch.lookup(&zero);
}

static __always_inline void record_submit(void *ctx, char *rec, u32 size)
{
	if (size > NSG_RECORD_MAX)
		return;
#if NSG_USE_RINGBUF
	if (events.ringbuf_output(rec, size, wake_flag()) != 0) {
		count(NSG_CNT_RINGBUF_FULL);
		return;
	}
	wake_sleeping_reader();
#else
	/* A full perf buffer is counted by the reader's lost-sample callback. */
	events.perf_submit(ctx, rec, size);
#endif
	count(NSG_CNT_EVENTS);
}

/* The fields every brief record has: the current task is the subject. */
static __always_inline void fill_brief(struct nsg_brief *e, u8 kind, u64 ts_ns, const char *task)
{
#if NSG_TASK_STORAGE
	/* Typed loads off the current task: what bpf_get_current_pid_tgid() returns, without the call. */
	e->pid = CUR_U32(task + OFF_TASK_TGID);
	e->tid = CUR_U32(task + OFF_TASK_PID);
#else
	u64 pid_tgid = bpf_get_current_pid_tgid();
	e->pid = pid_tgid >> 32;
	e->tid = (u32)pid_tgid;
#endif
	e->size = sizeof(*e);
	e->version = NSG_ABI_VERSION;
	e->kind = kind;
	e->syscall = NSG_SYS_NONE;
	e->nchanges = 0;
	e->info = NSG_INFO_BRIEF;
	e->ts_ns = ts_ns;
	e->child_pid = 0;
	e->exit_code = 0;
}

/* Every field of a full record; `task` is cur_task(). */
static __always_inline void fill_full(struct nsg_event *e, u8 kind, const char *task)
{
	const char *parent = CUR_PTR(task + OFF_TASK_REAL_PARENT);
	u64 pid_tgid = bpf_get_current_pid_tgid();

	e->size = sizeof(*e);
	e->version = NSG_ABI_VERSION;
	e->kind = kind;
	e->syscall = NSG_SYS_NONE;
	e->nchanges = 0;
	e->info = 0;
	e->ts_ns = bpf_ktime_get_ns();
	e->pid = pid_tgid >> 32;
	e->tid = (u32)pid_tgid;
	e->ppid = parent ? CUR_U32(parent + OFF_TASK_TGID) : 0;
	e->uid = cur_uid(task);
	e->vpid = cur_vpid(task);
	e->child_pid = 0;
	e->child_vpid = 0;
	e->fd = 0;
	e->exit_code = 0;
	e->args_len = 0;
	e->flags = 0;
	e->ret = 0;
	/* The current task's cgroup; a forked child starts in its parent's. */
	e->cgroup_id = bpf_get_current_cgroup_id();
	cur_comm(e->comm, task);
}

static __always_inline struct nsg_ns_change *change_at(char *rec, u32 n)
{
	return (struct nsg_ns_change *)(rec + sizeof(struct nsg_event) + n * sizeof(struct nsg_ns_change));
}

/*
 * Append one change per slot whose pointer differs between `before` and `after`.
 * Values are read from `after` always, and from `before` only where `live_before`
 * has the slot (its namespace is still alive) or `known` has them (read at entry).
 *
 * The running count lives in the record (nchanges, which fill_full zeroed), not in a
 * register: the verifier tracks a register's exact value, so each of the 2^10 ways the
 * slots can differ was a path of its own (~0.85 s to load each of the unshare and setns
 * exit programs, most of `nsgraph trace`'s start-up beside the compile); a count read
 * back from memory is just "0..15", and the paths meet again after every slot.
 */
static __always_inline u32 append_changes(char *rec, const u64 *before, const u64 *after, u16 live_before,
                                          const struct nsg_call *known, const char *after_task)
{
	struct nsg_event *e = (struct nsg_event *)rec;
#pragma unroll
	for (int slot = 0; slot < NSG_NS_COUNT; slot++) {
		if (before[slot] == after[slot])
			continue;
		u32 n = e->nchanges & 15;
		struct nsg_ns_change *c = change_at(rec, n);
		c->slot = slot;
		__builtin_memset(c->pad, 0, sizeof(c->pad));
		c->id_before = 0;
		c->inum_before = 0;
		if (live_before & SLOT(slot)) {
			ns_value(before[slot], slot, &c->id_before, &c->inum_before);
		} else if (known && (known->read_mask & SLOT(slot))) {
			c->id_before = known->id[slot];
			c->inum_before = known->inum[slot];
		}
		/* `after` is the current task's own (unshare, setns): typed loads. */
		if (after_task)
			cur_slot_value(after_task, slot, after[slot], &c->id_after, &c->inum_after);
		else
			ns_value(after[slot], slot, &c->id_after, &c->inum_after);
		e->nchanges = n + 1;
	}
	return e->nchanges & 15;
}

/* -- unshare and setns ------------------------------------------------------ */

/*
 * Entry: remember the namespace pointers, and the values of the slots the call
 * may change (once it returns, a replaced namespace may already be freed).
 */
static __always_inline int ns_call_enter(u8 syscall, u64 flags, s32 fd, u16 may_change)
{
	u32 tid = current_tid();
	struct nsg_call *c = call_begin(tid);
	if (!c) {
		count(NSG_CNT_PENDING_FULL);
		return 0;
	}
	c->flags = flags;
	c->fd = fd;
	c->syscall = syscall;
	c->read_mask = may_change;
	const char *task = cur_task();
	cur_ns_ptrs(task, c->ptr, 0);
#pragma unroll
	for (int slot = 0; slot < NSG_NS_COUNT; slot++) {
		if (may_change & SLOT(slot))
			cur_slot_value(task, slot, c->ptr[slot], &c->id[slot], &c->inum[slot]);
	}
	if (call_commit(tid, c) != 0)
		count(NSG_CNT_PENDING_FULL);
	return 0;
}

static __always_inline u8 diverged(const struct nsg_task *t)
{
	return t ? t->time_switch | t->pid_switch : 0;
}

/*
 * After unshare/setns: will this task's children (and its next exec) land in other
 * pid/time namespaces than its own?  Such a task's forks are sent in full.  Only
 * a change of pid_for_children or of a time slot can start or end that state.
 */
static __always_inline void note_divergence(const char *task, const struct nsg_call *c, const u64 *now)
{
	u8 pid_changed = now[NSG_NS_PID_FOR_CHILDREN] != c->ptr[NSG_NS_PID_FOR_CHILDREN];
	u8 time_changed = now[NSG_NS_TIME] != c->ptr[NSG_NS_TIME] ||
	                  now[NSG_NS_TIME_FOR_CHILDREN] != c->ptr[NSG_NS_TIME_FOR_CHILDREN];
	if (!pid_changed && !time_changed)
		return;
	struct nsg_task *t = task_get(0);
	u8 was = diverged(t);
	u8 pid_switch = t ? t->pid_switch : 0;
	u8 time_switch = t ? t->time_switch : 0;
	if (pid_changed) {
		u32 level = 0, nr = 0;
		u64 active = 0;
		pid_upid_at(cur_pid_struct(task, &level), level, &nr, &active);
		pid_switch = now[NSG_NS_PID_FOR_CHILDREN] != active;
	}
	if (time_changed)
		time_switch = now[NSG_NS_TIME] != now[NSG_NS_TIME_FOR_CHILDREN];
	if (!t && (pid_switch || time_switch))
		t = task_get(1);
	if (!t)
		return;
	t->pid_switch = pid_switch;
	t->time_switch = time_switch;
	if (time_switch)  /* the time namespace that exec will leave, for its record */
		ns_value(now[NSG_NS_TIME], NSG_NS_TIME, &t->time_id, &t->time_inum);
	u8 is = diverged(t);
	if (is != was)
		gate_add(GATE_DIVERGED, is ? 1 : -1);
}

/* Exit: one record with the slots whose pointers changed. */
static __always_inline int ns_call_exit(void *ctx, u8 kind, long ret)
{
	u32 tid = current_tid();
	struct nsg_call *c = call_find(tid);
	if (!c)
		return 0;
	char *rec = record_start();
	if (!rec) {
		call_end(tid, c);
		return 0;
	}
	const char *task = cur_task();
	struct nsg_event *e = (struct nsg_event *)rec;
	fill_full(e, kind, task);
	e->syscall = c->syscall;
	e->flags = c->flags;
	e->fd = c->fd;
	e->ret = ret;
	u32 n = 0;
	if (ret >= 0) {
		u64 now[NSG_NS_COUNT];
		cur_ns_ptrs(task, now, 0);
		n = append_changes(rec, c->ptr, now, 0, c, task);
		note_divergence(task, c, now);
	}
	if (!call_still_mine(tid, c)) {
		/* Taken over as stale while this call ran: what was read may be another's. */
		count(NSG_CNT_PENDING_FULL);
		return 0;
	}
	call_end(tid, c);
	e->nchanges = n;
	e->size = sizeof(*e) + n * sizeof(struct nsg_ns_change);
	record_submit(ctx, rec, e->size);
	return 0;
}

/* -- clone, clone3 and fork --------------------------------------------------- */

/*
 * The system call behind a fork and its flags, from the parent's saved user
 * registers: clone's first argument is its flags, clone3's points to its struct
 * clone_args (flags first).  Read only for a fork that made namespaces, so that
 * the record says what was asked for, as the syscall's own probes used to.
 * Elsewhere (kernels without bpf_task_pt_regs, 5.15, or another architecture's
 * registers) the record has NSG_SYS_NONE and the flags the namespaces show.
 */
#define NSG_PF_KTHREAD 0x00200000
static __always_inline u8 fork_syscall(const char *task, u64 *flags)
{
#if NSG_HAVE_CLONE_REGS && NSG_TASK_STORAGE
	if (CUR_U32(task + OFF_TASK_FLAGS) & NSG_PF_KTHREAD)
		return NSG_SYS_NONE;    /* a kernel thread's registers are not a system call's */
	const char *regs = (const char *)bpf_task_pt_regs((struct task_struct *)task);
	/* The syscall number's low half: orig_ax on x86-64 (8 bytes), syscallno on arm64 (4). */
	s32 nr = *(const s32 *)(regs + OFF_PT_REGS_SYSNR);
	u64 arg0 = *(const u64 *)(regs + OFF_PT_REGS_ARG0);
	if (nr == NSG_NR_CLONE) {
		*flags = arg0;
		return NSG_SYS_CLONE;
	}
	if (nr == NSG_NR_CLONE3 && bpf_probe_read_user(flags, sizeof(*flags), (const void *)arg0) == 0)
		return NSG_SYS_CLONE3;
#endif
	return NSG_SYS_NONE;
}

/*
 * The CLONE_NEW* flags a fork's namespaces show: a slot of the child that is not
 * its parent's is a namespace the clone made.  pid and time are read from the
 * *_for_children slots: a child of a task that unshared pid or time lands in
 * namespaces its parent made earlier, which this clone did not create.
 */
static __always_inline u64 made_flags(const u64 *parent, const u64 *child)
{
	u64 flags = 0;
	if (parent[NSG_NS_MNT] != child[NSG_NS_MNT])
		flags |= NSG_CLONE_NEWNS;
	if (parent[NSG_NS_PID_FOR_CHILDREN] != child[NSG_NS_PID_FOR_CHILDREN])
		flags |= NSG_CLONE_NEWPID;
	if (parent[NSG_NS_NET] != child[NSG_NS_NET])
		flags |= NSG_CLONE_NEWNET;
	if (parent[NSG_NS_UTS] != child[NSG_NS_UTS])
		flags |= NSG_CLONE_NEWUTS;
	if (parent[NSG_NS_IPC] != child[NSG_NS_IPC])
		flags |= NSG_CLONE_NEWIPC;
	if (parent[NSG_NS_USER] != child[NSG_NS_USER])
		flags |= NSG_CLONE_NEWUSER;
	if (parent[NSG_NS_CGROUP] != child[NSG_NS_CGROUP])
		flags |= NSG_CLONE_NEWCGROUP;
	if (parent[NSG_NS_TIME_FOR_CHILDREN] != child[NSG_NS_TIME_FOR_CHILDREN])
		flags |= NSG_CLONE_NEWTIME;
	return flags;
}

/*
 * The child's credentials and nsproxy pointers: one read of the span of the task
 * struct that holds both (they sit ~120 bytes apart on 5.x/6.x kernels), into
 * scratch (the stack is kept for the record's arrays).
 */
#define NSG_CRED_LO (OFF_TASK_REAL_CRED < OFF_TASK_NSPROXY ? OFF_TASK_REAL_CRED : OFF_TASK_NSPROXY)
#define NSG_CRED_HI (OFF_TASK_REAL_CRED < OFF_TASK_NSPROXY ? OFF_TASK_NSPROXY : OFF_TASK_REAL_CRED)
static __always_inline void child_cred_nsproxy(const char *child, u64 *cred, u64 *nsproxy)
{
#if NSG_CRED_HI - NSG_CRED_LO <= 248 && OFF_TASK_REAL_CRED % 8 == 0 && OFF_TASK_NSPROXY % 8 == 0
	int zero = 0;
	u64 *span = (u64 *)scratch.lookup(&zero);
	if (!span || bpf_probe_read_kernel(span, NSG_CRED_HI - NSG_CRED_LO + 8, child + NSG_CRED_LO) != 0) {
		*cred = *nsproxy = 0;
		return;
	}
	*cred = span[(OFF_TASK_REAL_CRED - NSG_CRED_LO) / 8];
	*nsproxy = span[(OFF_TASK_NSPROXY - NSG_CRED_LO) / 8];
#else
	*cred = (u64)read_ptr(child + OFF_TASK_REAL_CRED);
	*nsproxy = (u64)read_ptr(child + OFF_TASK_NSPROXY);
#endif
}

/*
 * The child's fields the fork probe needs.  On the tp_btf path (NSG_TP_BTF) the
 * child is a BTF pointer and these are plain loads, a few ns each; on the raw
 * tracepoint, one bpf_probe_read_kernel per span of the task struct (~70 ns each
 * on a 6.18 VM).  child_user_ns is read only when the child has credentials of
 * its own (a new process; a new thread shares its creator's).
 */
struct nsg_child {
	u32 tid;
	u32 tgid;
	u64 real_parent;
	u64 cred;
	u64 nsproxy;
};

static __always_inline void child_fields(const char *child, struct nsg_child *c)
{
#if NSG_TP_BTF
	/* Each load must be one member as BTF has it: the barrier keeps the compiler from
	 * merging the two 4-byte ids into one 8-byte load, which the verifier refuses. */
	c->tid = *(const u32 *)(child + OFF_TASK_PID);
	asm volatile("" ::: "memory");
	c->tgid = *(const u32 *)(child + OFF_TASK_TGID);
	c->real_parent = *(const u64 *)(child + OFF_TASK_REAL_PARENT);
	c->nsproxy = *(const u64 *)(child + OFF_TASK_NSPROXY);
	c->cred = *(const u64 *)(child + OFF_TASK_REAL_CRED);
#else
	/* pid, tgid and real_parent: one read where they sit close together. */
#if OFF_TASK_TGID == OFF_TASK_PID + 4 && OFF_TASK_REAL_PARENT > OFF_TASK_PID && \
    OFF_TASK_REAL_PARENT - OFF_TASK_PID <= 56 && (OFF_TASK_REAL_PARENT - OFF_TASK_PID) % 8 == 0
	u64 ids[(OFF_TASK_REAL_PARENT - OFF_TASK_PID) / 8 + 1] = {};
	bpf_probe_read_kernel(ids, sizeof(ids), child + OFF_TASK_PID);
	c->tid = (u32)ids[0];
	c->tgid = ids[0] >> 32;
	c->real_parent = ids[(OFF_TASK_REAL_PARENT - OFF_TASK_PID) / 8];
#else
	c->tid = read_u32(child + OFF_TASK_PID);
	c->tgid = read_u32(child + OFF_TASK_TGID);
	c->real_parent = (u64)read_ptr(child + OFF_TASK_REAL_PARENT);
#endif
	child_cred_nsproxy(child, &c->cred, &c->nsproxy);
#endif
}

/* When the fork happened: the child's start_time, which copy_process() took from the
 * same clock (CLOCK_MONOTONIC) just before this tracepoint; on the tp_btf path a
 * plain load instead of a clock read (~30-60 ns on a VM). */
static __always_inline u64 fork_time(const char *child)
{
#if NSG_TP_BTF && defined(OFF_TASK_START_TIME)
	return *(const u64 *)(child + OFF_TASK_START_TIME);
#else
	return bpf_ktime_get_ns();
#endif
}

static __always_inline u64 child_user_ns(const char *child)
{
#if NSG_TP_BTF
	const char *cred = *(const char *const *)(child + OFF_TASK_REAL_CRED);
	return cred ? *(const u64 *)(cred + OFF_CRED_USER_NS) : 0;
#else
	const char *cred = read_ptr(child + OFF_TASK_REAL_CRED);
	return cred ? read_u64(cred + OFF_CRED_USER_NS) : 0;
#endif
}

/*
 * Every fork and clone, namespace-making ones included: runs in the parent after
 * copy_process() has given the child its nsproxy and credentials, and before the
 * child is woken, so the record is in the buffer before anything the child does.
 * A clone made namespaces exactly when the child's nsproxy or user namespace is
 * not its parent's; no syscall probe is needed for that (a failed clone made
 * nothing and is not reported).
 */
static __always_inline int fork_event(void *ctx, u64 parent, const char *child)
{
	/* `parent` is the current task, read as such (cur_task). */
	const char *task = cur_task();
	struct nsg_child kid;
	child_fields(child, &kid);
	u32 child_tid = kid.tid, child_tgid = kid.tgid;
	u64 child_parent = kid.real_parent;
	const char *parent_cred = CUR_PTR(task + OFF_TASK_REAL_CRED);
	u8 full = kid.nsproxy != (u64)CUR_PTR(task + OFF_TASK_NSPROXY);
	/* A new thread shares its creator's credentials; a new process has its own copy,
	 * whose user namespace is its parent's unless the clone made one. */
	if (!full && kid.cred != (u64)parent_cred)
		full = child_user_ns(child) != (parent_cred ? CUR_U64(parent_cred + OFF_CRED_USER_NS) : 0);
	if (!full && child_tid != child_tgid)
		return 0;       /* a new thread in its creator's namespaces */
	if (!full && gate(GATE_DIVERGED))
		full = diverged(task_get(0));
	if (!full) {
		/* No new namespace: the child's are its parent's, as the consumer can derive. */
#if NSG_PROC_EVENTS
		struct nsg_brief *e = brief_reserve();
		if (!e)
			return 0;
		fill_brief(e, NSG_KIND_CLONE, fork_time(child), task);
		cur_comm(e->comm, task);
		e->child_pid = child_tgid;
		/* CLONE_PARENT: the child is its grandparent's (runc's first child is). */
		if (child_parent != parent)
			e->info |= NSG_INFO_CLONE_PARENT;
		brief_submit(ctx, e);
#endif
		return 0;
	}
	u64 before[NSG_NS_COUNT], after[NSG_NS_COUNT];
	cur_ns_ptrs(task, before, 1);
	task_ns_ptrs(child, after, 1);
	char *rec = record_start();
	if (!rec)
		return 0;
	struct nsg_event *e = (struct nsg_event *)rec;
	fill_full(e, NSG_KIND_CLONE, task);
	u64 flags = 0;
	e->syscall = fork_syscall(task, &flags);
	if (e->syscall != NSG_SYS_NONE) {
		e->info = NSG_INFO_FLAGS_SEEN;
	} else {
		flags = made_flags(before, after);
		if (child_parent != parent)
			flags |= NSG_CLONE_PARENT;
	}
	e->flags = flags;
	u32 parent_level = 0, child_level = 0, nr = 0;
	u64 pid_ns = 0;
	cur_pid_struct(task, &parent_level);
	const char *child_pid = task_pid_struct(child, &child_level);
	e->child_pid = child_tgid;
	pid_upid_at(child_pid, child_level, &nr, &pid_ns);
	e->child_vpid = nr;
	/* What clone() returns in the parent: the child's pid in the parent's pid namespace. */
	pid_upid_at(child_pid, parent_level, &nr, &pid_ns);
	e->ret = nr;
	u32 n = append_changes(rec, before, after, NSG_ALL_SLOTS, NULL, NULL);
	e->nchanges = n;
	e->size = sizeof(*e) + n * sizeof(struct nsg_ns_change);
	record_submit(ctx, rec, e->size);
	return 0;
}

#if NSG_TP_BTF
/* Loaded and attached as tp_btf by tracer/kernel/tpbtf.py (BCC cannot): its
 * arguments are BTF pointers to the parent and the child. */
int nsg_btf_fork(u64 *ctx)
{
	return fork_event(ctx, ctx[0], (const char *)ctx[1]);
}
#else
RAW_TRACEPOINT_PROBE(sched_process_fork)
{
	return fork_event(ctx, ctx->args[0], (const char *)ctx->args[1]);
}
#endif

#if NSG_HOOKS_FENTRY
/*
 * Trampolines: only the calls that change namespaces pay, not every system call
 * of the machine (an enabled syscall tracepoint puts every task on the slow
 * syscall path).  NSG_FN_* name the kernel functions (x86-64 syscall wrappers
 * take a struct pt_regs *); the indirection expands them before BCC's macros
 * paste them into program names.
 */
#define NSG_FENTRY(fn, ...) KFUNC_PROBE(fn, __VA_ARGS__)
#define NSG_FEXIT(fn, ...) KRETFUNC_PROBE(fn, __VA_ARGS__)

NSG_FENTRY(NSG_FN_UNSHARE, unsigned long unshare_flags)
{
	return ns_call_enter(NSG_SYS_UNSHARE, unshare_flags, 0, flag_slots(unshare_flags));
}

NSG_FEXIT(NSG_FN_UNSHARE, unsigned long unshare_flags, int ret)
{
	return ns_call_exit(ctx, NSG_KIND_UNSHARE, ret);
}

/* A system call's first and second arguments, from the wrapper's struct pt_regs
 * (offsets from BTF: the compiler's headers do not define the struct). */
static __always_inline u64 syscall_arg(const void *regs, u32 offset)
{
	return read_u64((const char *)regs + offset);
}

NSG_FENTRY(NSG_FN_SETNS, const void *regs)
{
	u64 nstype = (u32)syscall_arg(regs, OFF_PT_REGS_SI);
	return ns_call_enter(NSG_SYS_SETNS, nstype, (s32)syscall_arg(regs, OFF_PT_REGS_DI), setns_slots(nstype));
}

NSG_FEXIT(NSG_FN_SETNS, const void *regs, long ret)
{
	return ns_call_exit(ctx, NSG_KIND_SETNS, ret);
}

#else
/* Exits are defined (so attached) before entries: a call in flight while the
 * probes attach then has no entry, rather than an entry whose exit never comes. */
TRACEPOINT_PROBE(syscalls, sys_exit_unshare)
{
	return ns_call_exit(args, NSG_KIND_UNSHARE, args->ret);
}

TRACEPOINT_PROBE(syscalls, sys_exit_setns)
{
	return ns_call_exit(args, NSG_KIND_SETNS, args->ret);
}

TRACEPOINT_PROBE(syscalls, sys_enter_unshare)
{
	return ns_call_enter(NSG_SYS_UNSHARE, args->unshare_flags, 0, flag_slots(args->unshare_flags));
}

TRACEPOINT_PROBE(syscalls, sys_enter_setns)
{
	/* The tracepoint calls the nstype argument "flags". */
	u64 nstype = (u32)args->flags;
	return ns_call_enter(NSG_SYS_SETNS, nstype, (s32)args->fd, setns_slots(nstype));
}

#endif

/* -- exec and exit ------------------------------------------------------------- */

#if NSG_PROC_EVENTS
/*
 * The exec record up to its tail (the filename, filled by the caller from its
 * tracepoint's arguments); returns the number of namespace changes written.
 */
static __always_inline u32 exec_head(char *rec, const char *task, s32 old_pid)
{
	struct nsg_event *e = (struct nsg_event *)rec;
	fill_full(e, NSG_KIND_EXEC, task);
	e->ret = old_pid;
	u32 n = 0;
#if NSG_HAVE_TIME_NS
	/* exec moves a task whose time_for_children differs into that namespace. */
	if (gate(GATE_DIVERGED)) {
		struct nsg_task *t = task_get(0);
		if (t && t->time_switch) {
			t->time_switch = 0;
			if (!t->pid_switch)
				gate_add(GATE_DIVERGED, -1);
			u64 now[NSG_NS_COUNT];
			cur_ns_ptrs(task, now, 0);
			struct nsg_ns_change *change = change_at(rec, 0);
			change->slot = NSG_NS_TIME;
			__builtin_memset(change->pad, 0, sizeof(change->pad));
			change->id_before = t->time_id;
			change->inum_before = t->time_inum;
			ns_value(now[NSG_NS_TIME], NSG_NS_TIME, &change->id_after, &change->inum_after);
			n = 1;
		}
	}
#endif
	return n;
}

/* argv of the new program (the join-session summary names the command that ran), then out. */
static __always_inline int exec_finish(void *ctx, char *rec, const char *task, struct nsg_exec_tail *tail, u32 n)
{
	struct nsg_event *e = (struct nsg_event *)rec;
	tail->args[0] = 0;
	const char *mm = CUR_PTR(task + OFF_TASK_MM);
	if (mm) {
		u64 arg_start = CUR_U64(mm + OFF_MM_ARG_START), arg_end = CUR_U64(mm + OFF_MM_ARG_END);
		u64 len = arg_end > arg_start ? arg_end - arg_start : 0;
		e->args_len = (u32)len;
		if (len > NSG_ARGS_LEN)
			len = NSG_ARGS_LEN;
		if (len > 0 && bpf_probe_read_user(tail->args, len & (NSG_ARGS_LEN * 2 - 1), (const void *)arg_start) != 0)
			e->args_len = 0;
	}
	e->nchanges = n;
	e->size = sizeof(*e) + n * sizeof(struct nsg_ns_change) + sizeof(struct nsg_exec_tail);
	record_submit(ctx, rec, e->size);
	return 0;
}

/* group_dead: 1 when the last thread of the process is exiting, 0 when not, -1 unknown. */
static __always_inline int exit_event(void *ctx, int group_dead)
{
	const char *task = cur_task();
	if (gate(GATE_DIVERGED)) {
		struct nsg_task *t = task_get(0);
		if (diverged(t)) {
			t->time_switch = t->pid_switch = 0;
			gate_add(GATE_DIVERGED, -1);
		}
	}
	/* Only the last thread of a process ends the process. */
	if (group_dead == 0)
		return 0;
	if (group_dead < 0) {
		const char *signal = CUR_PTR(task + OFF_TASK_SIGNAL);
		if (signal && CUR_U32(signal + OFF_SIGNAL_STRUCT_LIVE) != 0)
			return 0;
	}
	struct nsg_brief *e = brief_reserve();
	if (!e)
		return 0;
	fill_brief(e, NSG_KIND_EXIT, bpf_ktime_get_ns(), task);
	cur_comm(e->comm, task);
	e->exit_code = (s32)CUR_U32(task + OFF_TASK_EXIT_CODE);
	brief_submit(ctx, e);
	return 0;
}

#if NSG_TP_BTF
/* tp_btf programs (tracer/kernel/tpbtf.py attaches them): no trace record is built
 * for them, and their arguments are typed pointers. */
int nsg_btf_exec(u64 *ctx)
{
	/* (struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm) */
	char *rec = record_start();
	if (!rec)
		return 0;
	const char *task = cur_task();
	u32 n = exec_head(rec, task, (s32)ctx[1]);
	struct nsg_exec_tail *tail = (struct nsg_exec_tail *)change_at(rec, n);
	const char *bprm = (const char *)ctx[2];
	const char *filename = *(const char *const *)(bprm + OFF_BPRM_FILENAME);
	tail->filename[0] = 0;
	if (filename)
		bpf_probe_read_kernel_str(tail->filename, sizeof(tail->filename), filename);
	return exec_finish(ctx, rec, task, tail, n);
}

int nsg_btf_exit(u64 *ctx)
{
	/* (struct task_struct *p, bool group_dead) where the tracepoint has group_dead */
#if NSG_EXIT_GROUP_DEAD
	return exit_event(ctx, (u8)ctx[1] != 0);
#else
	return exit_event(ctx, -1);
#endif
}
#else
TRACEPOINT_PROBE(sched, sched_process_exec)
{
	char *rec = record_start();
	if (!rec)
		return 0;
	const char *task = cur_task();
	u32 n = exec_head(rec, task, args->old_pid);
	struct nsg_exec_tail *tail = (struct nsg_exec_tail *)change_at(rec, n);
	TP_DATA_LOC_READ_STR(tail->filename, filename, sizeof(tail->filename));
	return exec_finish(args, rec, task, tail, n);
}

TRACEPOINT_PROBE(sched, sched_process_exit)
{
#if NSG_EXIT_GROUP_DEAD
	return exit_event(args, args->group_dead != 0);
#else
	return exit_event(args, -1);
#endif
}
#endif
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
