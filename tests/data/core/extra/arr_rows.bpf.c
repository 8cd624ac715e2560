/* Array-index accesses whose element is itself an array (libbpf >= 1.6 sizes the load/store
 * by the innermost element), built with: clang -g -O2 -target bpf -c arr_rows.bpf.c
 * Self-contained (no headers) so it builds wherever clang does. */
#define SEC(n) __attribute__((section(n), used))
#define PAI __attribute__((preserve_access_index))
#define SINK(ctx, i, v) (((volatile unsigned long long *)(ctx))[(i)] = (unsigned long long)(v))
#define ARG(ctx, type, i) ((type)(((void *volatile *)(ctx))[(i)]))

struct rows {
	int pad;
	unsigned int w[4];
	int m[2][3];
	unsigned int u[2][3];
	unsigned int v[3];
	int n[2][2][2];
} PAI;

SEC("kprobe/rows") int rows(void *ctx)
{
	struct rows *p = ARG(ctx, struct rows *, 0);

	SINK(ctx, 1, *(int *)p->m[1]);            /* 0:2:1   a row of int[3]: reads an int */
	SINK(ctx, 2, p->m[1][2]);                 /* 0:2:1:2 one int */
	SINK(ctx, 3, *(unsigned int *)p->u[1]);   /* 0:3:1   row whose element grows to 8 bytes */
	SINK(ctx, 4, p->v[1]);                    /* 0:4:1   unsigned int -> unsigned long */
	SINK(ctx, 5, *(int *)p->n[1]);            /* 0:5:1   a plane of int[2][2] */
	SINK(ctx, 6, *(unsigned int *)p->w);      /* 0:1     named array field, first element */
	return 0;
}
char _license[] SEC("license") = "GPL";
