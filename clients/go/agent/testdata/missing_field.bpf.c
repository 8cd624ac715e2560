// Reads a field no kernel has without guarding it: libbpf, cilium/ebpf and btfd all poison
// the instruction (no candidate has the field), so the verifier refuses the program.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct task_struct {
	int no_such_field;
} __attribute__((preserve_access_index));

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} out SEC(".maps");

SEC("raw_tracepoint/sys_enter")
int read_missing(void *ctx)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u32 key = 0, v = BPF_CORE_READ(task, no_such_field);

	bpf_map_update_elem(&out, &key, &v, BPF_ANY);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
