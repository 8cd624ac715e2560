// A CO-RE program for the agent tests: on every getpid(2) (raw tracepoint sys_enter, which
// needs no tracefs) it reads the calling task's pid, tgid and real_parent->tgid through
// CO-RE (BPF_CORE_READ) and stores them under the pid (the thread's id) with the ids the
// helper reports, so that the test compares the CO-RE reads with the kernel's own answer
// and with its own process ids.
//
// The local task_struct declares three fields in an order and at offsets that are not the
// kernel's: the program reads the right fields only if the relocations were applied.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <asm/unistd.h>

struct task_struct {
	int tgid;
	int pid;
	struct task_struct *real_parent;
} __attribute__((preserve_access_index));

/* The same kernel type ("___" flavor) with a field no kernel has. */
struct task_struct___nope {
	int no_such_field;
} __attribute__((preserve_access_index));

struct ids {
	__u32 pid;         /* task->pid (CO-RE) */
	__u32 tgid;        /* task->tgid (CO-RE) */
	__u32 ppid;        /* task->real_parent->tgid (CO-RE, two levels) */
	__u32 helper_pid;  /* bpf_get_current_pid_tgid(), low half */
	__u32 helper_tgid; /* bpf_get_current_pid_tgid(), high half */
	__u32 has_pid;     /* bpf_core_field_exists(task->pid): 1 */
	__u32 has_nope;    /* bpf_core_field_exists(no_such_field): 0 */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct ids);
} seen SEC(".maps");

SEC("raw_tracepoint/sys_enter")
int on_getpid(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *task;
	struct ids v = {};
	__u64 id;
	__u32 key;

	if (ctx->args[1] != __NR_getpid)
		return 0;
	task = (struct task_struct *)bpf_get_current_task();
	id = bpf_get_current_pid_tgid();

	v.pid = BPF_CORE_READ(task, pid);
	v.tgid = BPF_CORE_READ(task, tgid);
	v.ppid = BPF_CORE_READ(task, real_parent, tgid);
	v.has_pid = bpf_core_field_exists(task->pid);
	v.has_nope = bpf_core_field_exists(((struct task_struct___nope *)task)->no_such_field);
	v.helper_pid = (__u32)id;
	v.helper_tgid = id >> 32;
	key = v.pid;
	bpf_map_update_elem(&seen, &key, &v, BPF_ANY);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
