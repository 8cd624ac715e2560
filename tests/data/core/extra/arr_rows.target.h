/* The target's layout for arr_rows.bpf.c: every field moved, rows longer, and the element of
 * u and v widened. Included by arr_rows.target.c (BTF) and by the test's host program
 * (offsetof), so expected offsets come from the compiler, not from btfd. */
struct rows {
	long pad;
	unsigned int w[8];
	int m[2][4];
	unsigned long u[2][4];
	unsigned long v[3];
	int n[3][2][3];
};
