// CO-RE on a kernel enum that is an ENUM64 in the kernel's BTF (Linux >= 6.0 with pahole >=
// 1.24: perf_callchain_context's values need 64 bits). MinimizeBtf's answer then holds that
// ENUM64, which cilium/ebpf 0.9.1 cannot parse; btfd's patched instructions load it anyway.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

enum perf_callchain_context {
	PERF_CONTEXT_KERNEL = 1, /* the local value does not matter: CO-RE patches in the kernel's */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} out SEC(".maps");

SEC("raw_tracepoint/sys_enter")
int enum_values(void *ctx)
{
	__u32 k0 = 0, k1 = 1;
	__u64 exists = bpf_core_enum_value_exists(enum perf_callchain_context, PERF_CONTEXT_KERNEL);
	__u64 value = bpf_core_enum_value(enum perf_callchain_context, PERF_CONTEXT_KERNEL);

	bpf_map_update_elem(&out, &k0, &exists, BPF_ANY);
	bpf_map_update_elem(&out, &k1, &value, BPF_ANY);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
