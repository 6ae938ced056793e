// SPDX-License-Identifier: MIT
/*
 * toa-bpf: the eBPF backend's loader (src/bpf/), libbpf linked in
 * statically, so users need no bpftool and no libbpf of their own. A
 * co-process, not an addon: Debian's libbpf.a and libelf.a are not built
 * with -fPIC, so they can go into an executable but not into a .node.
 *
 * Thin on purpose: each request is one kernel or libbpf operation, and the
 * policy (which pins, which order, what to refuse) stays in TypeScript.
 * Protocol: one request per line on stdin, fields separated by tabs
 * (paths with a tab or newline are refused by the caller), byte strings in
 * hex; one JSON line per request on stdout: {"ok":...} or
 * {"error":{"code":"EACCES","errno":13,"message":"...","log":"..."}}, log
 * being libbpf's and the verifier's output for that request. Exits at EOF,
 * which also drops the lock a `lock` request took.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

/* libbpf's messages of the current call (one call at a time: JS is single-threaded) */
static char *logbuf;
static size_t loglen;

static int collect(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	va_list again;
	size_t keep;
	char *p;
	int n;

	(void)level;
	/* one message can be the verifier's whole log: size it first */
	va_copy(again, ap);
	n = vsnprintf(NULL, 0, fmt, again);
	va_end(again);
	if (n <= 0)
		return 0;
	p = realloc(logbuf, loglen + n + 1);
	if (!p)
		return 0;
	logbuf = p;
	vsnprintf(logbuf + loglen, n + 1, fmt, ap);
	loglen += n;
	/* bounded: a verifier log can run to megabytes, its end matters most */
	if (loglen > (4u << 20)) {
		keep = 2u << 20;
		memmove(logbuf, logbuf + loglen - keep, keep + 1);
		loglen = keep;
	}
	return 0;
}

static void log_reset(void)
{
	loglen = 0;
	if (logbuf)
		logbuf[0] = 0;
}

/* strerrorname_np() would raise the glibc floor to 2.32 */
static const char *errno_name(int err)
{
	static char other[16];

	switch (err) {
	case EPERM: return "EPERM";
	case ENOENT: return "ENOENT";
	case ESRCH: return "ESRCH";
	case EBADF: return "EBADF";
	case ENOMEM: return "ENOMEM";
	case EACCES: return "EACCES";
	case EFAULT: return "EFAULT";
	case EBUSY: return "EBUSY";
	case EEXIST: return "EEXIST";
	case ENOTDIR: return "ENOTDIR";
	case EINVAL: return "EINVAL";
	case ENOSPC: return "ENOSPC";
	case E2BIG: return "E2BIG";
	case ENOTSUP: return "ENOTSUP";
	case ETIMEDOUT: return "ETIMEDOUT";
	case ENOSYS: return "ENOSYS";
	case 524: return "ENOTSUPP";	/* the kernel's internal "not supported" */
	}
	snprintf(other, sizeof(other), "E%d", err);
	return other;
}

static void json_str(const char *s, size_t n)
{
	size_t i;

	putchar('"');
	for (i = 0; i < n; i++) {
		unsigned char c = s[i];

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c == '\n')
			fputs("\\n", stdout);
		else if (c < 0x20 || c >= 0x7f)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void fail(int err, const char *what)
{
	fprintf(stdout, "{\"error\":{\"code\":\"%s\",\"errno\":%d,\"message\":", errno_name(err), err);
	{
		char text[4400];

		snprintf(text, sizeof(text), "%s: %s", what, strerror(err));
		json_str(text, strlen(text));
	}
	if (loglen) {
		fputs(",\"log\":", stdout);
		json_str(logbuf, loglen);
	}
	fputs("}}\n", stdout);
}

static void ok_raw(const char *json)
{
	printf("{\"ok\":%s}\n", json);
}

static void hex_out(const unsigned char *p, size_t n)
{
	size_t i;

	putchar('"');
	for (i = 0; i < n; i++)
		printf("%02x", p[i]);
	putchar('"');
}

static int hex_in(const char *h, unsigned char *out, size_t want)
{
	size_t i;

	if (strlen(h) != 2 * want)
		return -1;
	for (i = 0; i < want; i++) {
		unsigned int b;

		if (sscanf(h + 2 * i, "%2x", &b) != 1)
			return -1;
		out[i] = b;
	}
	return 0;
}

static void tag_hex(const unsigned char *tag, char *hex)
{
	int i;

	for (i = 0; i < 8; i++)
		sprintf(hex + 2 * i, "%02x", tag[i]);
}

/* ---- objects ---- */

#define MAX_OBJECTS 4
static struct bpf_object *objects[MAX_OBJECTS];

static struct bpf_object *object_of(const char *h)
{
	int i = atoi(h);

	if (i < 0 || i >= MAX_OBJECTS || !objects[i]) {
		errno = EBADF;
		return NULL;
	}
	return objects[i];
}

static struct bpf_program *prog_of(struct bpf_object *obj, const char *name)
{
	struct bpf_program *p = bpf_object__find_program_by_name(obj, name);

	if (!p)
		errno = ENOENT;
	return p;
}

/*
 * open FILE MAPSDIR [LOGLEVEL]: opens the object and points every map at its pin in
 * MAPSDIR, so that load reuses a pinned map (an upgrade keeps the socket
 * storage, and with it every live connection's address) and pins a new one.
 */
static void op_open(char **a)
{
	struct bpf_object *obj;
	struct bpf_map *map;
	char pin[4200], num[16];
	int i;

	for (i = 0; i < MAX_OBJECTS && objects[i]; i++)
		;
	if (i == MAX_OBJECTS)
		return fail(EMFILE, "objects");
	{
		LIBBPF_OPTS(bpf_object_open_opts, opts);

		/* 4 (BPF_LOG_STATS): the verifier's instruction counts, for tests */
		if (a[3])
			opts.kernel_log_level = atoi(a[3]);
		obj = bpf_object__open_file(a[1], &opts);
	}
	if (!obj)
		return fail(errno, a[1]);
	bpf_object__for_each_map(map, obj) {
		const char *name = bpf_map__name(map);

		if (name[0] == '.')
			continue;
		snprintf(pin, sizeof(pin), "%s/%s", a[2], name);
		if (bpf_map__set_pin_path(map, pin)) {
			int err = errno;

			bpf_object__close(obj);
			return fail(err, pin);
		}
	}
	objects[i] = obj;
	snprintf(num, sizeof(num), "%d", i);
	ok_raw(num);
}

static void op_load(char **a)
{
	struct bpf_object *obj = object_of(a[1]);

	if (!obj)
		return fail(errno, "object");
	if (bpf_object__load(obj))
		return fail(errno, "load");
	/* what libbpf said (the verifier's statistics with a log level) */
	fputs("{\"ok\":", stdout);
	json_str(logbuf ? logbuf : "", loglen);
	fputs("}\n", stdout);
}

static void op_close(char **a)
{
	int i = atoi(a[1]);

	if (i < 0 || i >= MAX_OBJECTS || !objects[i])
		return fail(EBADF, "object");
	bpf_object__close(objects[i]);	/* attached programs stay: their links hold them */
	objects[i] = NULL;
	ok_raw("true");
}

static void print_prog(int fd)
{
	struct bpf_prog_info pi = {};
	__u32 len = sizeof(pi);
	char hex[17];

	if (bpf_obj_get_info_by_fd(fd, &pi, &len))
		return fail(errno, "program info");
	tag_hex(pi.tag, hex);
	printf("{\"ok\":{\"id\":%u,\"type\":%u,\"tag\":\"%s\",\"name\":", pi.id, pi.type, hex);
	json_str(pi.name, strnlen(pi.name, sizeof(pi.name)));
	fputs("}}\n", stdout);
}

/* prog H NAME: id and tag of a loaded program */
static void op_prog(char **a)
{
	struct bpf_object *obj = object_of(a[1]);
	struct bpf_program *p = obj ? prog_of(obj, a[2]) : NULL;

	if (!p)
		return fail(errno, a[2]);
	print_prog(bpf_program__fd(p));
}

/* progid ID: name, type and tag of any program (CAP_SYS_ADMIN) */
static void op_progid(char **a)
{
	int fd = bpf_prog_get_fd_by_id(strtoul(a[1], NULL, 10));

	if (fd < 0)
		return fail(errno, "program id");
	print_prog(fd);
	close(fd);
}

static int open_dir(const char *path)
{
	return open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

/*
 * attach H NAME CGROUP PIN: a bpf_link to the cgroup, pinned. The link
 * lives exactly as long as its pin (and open fds): no attachment outlives
 * what `status` can see, and BPF_F_ALLOW_MULTI semantics hold for links.
 */
static void op_attach(char **a)
{
	struct bpf_object *obj = object_of(a[1]);
	struct bpf_program *p = obj ? prog_of(obj, a[2]) : NULL;
	struct bpf_link *link;
	int cg, err;

	if (!p)
		return fail(errno, a[2]);
	cg = open_dir(a[3]);
	if (cg < 0)
		return fail(errno, a[3]);
	link = bpf_program__attach_cgroup(p, cg);
	err = errno;
	close(cg);
	if (!link)
		return fail(err, "attach");
	if (bpf_link__pin(link, a[4])) {
		err = errno;
		bpf_link__destroy(link);	/* never pinned: this detaches it */
		return fail(err, a[4]);
	}
	bpf_link__destroy(link);	/* pinned: only our fd goes */
	ok_raw("true");
}

/* update PIN H NAME: the pinned link runs the new program from now on, atomically */
static void op_update(char **a)
{
	struct bpf_object *obj = object_of(a[2]);
	struct bpf_program *p = obj ? prog_of(obj, a[3]) : NULL;
	int fd, err;

	if (!p)
		return fail(errno, a[3]);
	fd = bpf_obj_get(a[1]);
	if (fd < 0)
		return fail(errno, a[1]);
	err = bpf_link_update(fd, bpf_program__fd(p), NULL) ? errno : 0;
	close(fd);
	if (err)
		return fail(err, "link update");
	ok_raw("true");
}

/* link PIN: what a pinned link attaches, and where */
static void op_link(char **a)
{
	struct bpf_link_info li = {};
	__u32 len = sizeof(li);
	int fd = bpf_obj_get(a[1]), err;

	if (fd < 0)
		return fail(errno, a[1]);
	err = bpf_obj_get_info_by_fd(fd, &li, &len) ? errno : 0;
	close(fd);
	if (err)
		return fail(err, a[1]);
	printf("{\"ok\":{\"id\":%u,\"progId\":%u,\"type\":%u", li.id, li.prog_id, li.type);
	if (li.type == BPF_LINK_TYPE_CGROUP)
		printf(",\"attachType\":%u,\"cgroupId\":%llu", li.cgroup.attach_type,
		       (unsigned long long)li.cgroup.cgroup_id);
	fputs("}}\n", stdout);
}

/* query CGROUP TYPE: ids of the programs attached to that cgroup itself */
static void op_query(char **a)
{
	__u32 ids[64], cnt = 64, flags = 0, i;
	int cg = open_dir(a[1]), err;

	if (cg < 0)
		return fail(errno, a[1]);
	/* the query 5.10 understands: no per-program attach flags */
	err = bpf_prog_query(cg, atoi(a[2]), 0, &flags, ids, &cnt) ? errno : 0;
	close(cg);
	if (err)
		return fail(err, "BPF_PROG_QUERY");
	fputs("{\"ok\":[", stdout);
	for (i = 0; i < cnt; i++)
		printf("%s%u", i ? "," : "", ids[i]);
	fputs("]}\n", stdout);
}

/* detach CGROUP TYPE ID: removes an attachment made without a link */
static void op_detach(char **a)
{
	int fd = bpf_prog_get_fd_by_id(strtoul(a[3], NULL, 10)), cg, err;

	if (fd < 0)
		return fail(errno, "program id");
	cg = open_dir(a[1]);
	if (cg < 0) {
		err = errno;
		close(fd);
		return fail(err, a[1]);
	}
	err = bpf_prog_detach2(fd, cg, atoi(a[2])) ? errno : 0;
	close(cg);
	close(fd);
	if (err)
		return fail(err, "detach");
	ok_raw("true");
}

/* named NAME-PREFIX: every loaded program whose name starts so */
static void op_named(char **a)
{
	__u32 id = 0;
	int n = 0;

	fputs("{\"ok\":[", stdout);
	while (!bpf_prog_get_next_id(id, &id)) {
		struct bpf_prog_info pi = {};
		__u32 len = sizeof(pi);
		int fd = bpf_prog_get_fd_by_id(id);
		char hex[17];

		if (fd < 0)
			continue;	/* gone meanwhile */
		if (!bpf_obj_get_info_by_fd(fd, &pi, &len) && !strncmp(pi.name, a[1], strlen(a[1]))) {
			tag_hex(pi.tag, hex);
			printf("%s{\"id\":%u,\"type\":%u,\"tag\":\"%s\",\"name\":", n++ ? "," : "", pi.id, pi.type, hex);
			json_str(pi.name, strnlen(pi.name, sizeof(pi.name)));
			putchar('}');
		}
		close(fd);
	}
	fputs("]}\n", stdout);
}

/* links: every cgroup bpf_link of the machine, pinned or held by an fd */
static void op_links(char **a)
{
	__u32 id = 0;
	int n = 0;

	(void)a;
	fputs("{\"ok\":[", stdout);
	while (!bpf_link_get_next_id(id, &id)) {
		struct bpf_link_info li = {};
		__u32 len = sizeof(li);
		int fd = bpf_link_get_fd_by_id(id);

		if (fd < 0)
			continue;
		if (!bpf_obj_get_info_by_fd(fd, &li, &len) && li.type == BPF_LINK_TYPE_CGROUP)
			printf("%s{\"id\":%u,\"progId\":%u,\"attachType\":%u,\"cgroupId\":%llu}", n++ ? "," : "",
			       li.id, li.prog_id, li.cgroup.attach_type, (unsigned long long)li.cgroup.cgroup_id);
		close(fd);
	}
	fputs("]}\n", stdout);
}

/* ---- maps, by pin ---- */

struct pinned_map {
	int fd;
	struct bpf_map_info info;
	size_t vsize;	/* per-CPU maps: one 8-aligned value per possible CPU */
};

static int map_open(const char *pin, struct pinned_map *m)
{
	__u32 len = sizeof(m->info);

	memset(&m->info, 0, sizeof(m->info));
	m->fd = bpf_obj_get(pin);
	if (m->fd < 0) {
		fail(errno, pin);
		return -1;
	}
	if (bpf_obj_get_info_by_fd(m->fd, &m->info, &len)) {
		fail(errno, pin);
		close(m->fd);
		return -1;
	}
	m->vsize = m->info.value_size;
	if (m->info.type == BPF_MAP_TYPE_PERCPU_ARRAY || m->info.type == BPF_MAP_TYPE_PERCPU_HASH)
		m->vsize = ((m->info.value_size + 7) & ~7u) * libbpf_num_possible_cpus();
	return 0;
}

static void op_mapinfo(char **a)
{
	struct pinned_map m;

	if (map_open(a[1], &m))
		return;
	close(m.fd);
	printf("{\"ok\":{\"id\":%u,\"type\":%u,\"keySize\":%u,\"valueSize\":%u,\"maxEntries\":%u,\"flags\":%u,\"name\":",
	       m.info.id, m.info.type, m.info.key_size, m.info.value_size, m.info.max_entries, m.info.map_flags);
	json_str(m.info.name, strnlen(m.info.name, sizeof(m.info.name)));
	fputs("}}\n", stdout);
}

static unsigned char kbuf[256], vbuf[1 << 20];

static void op_lookup(char **a)
{
	struct pinned_map m;
	int err;

	if (map_open(a[1], &m))
		return;
	if (m.info.key_size > sizeof(kbuf) || m.vsize > sizeof(vbuf) || hex_in(a[2], kbuf, m.info.key_size)) {
		close(m.fd);
		return fail(EINVAL, "key");
	}
	err = bpf_map_lookup_elem(m.fd, kbuf, vbuf) ? errno : 0;
	close(m.fd);
	if (err == ENOENT)
		return ok_raw("null");
	if (err)
		return fail(err, "map lookup");
	fputs("{\"ok\":", stdout);
	hex_out(vbuf, m.vsize);
	fputs("}\n", stdout);
}

static void op_set(char **a)
{
	struct pinned_map m;
	int err;

	if (map_open(a[1], &m))
		return;
	if (m.info.key_size > sizeof(kbuf) || m.info.value_size > sizeof(vbuf) ||
	    hex_in(a[2], kbuf, m.info.key_size) || hex_in(a[3], vbuf, m.info.value_size)) {
		close(m.fd);
		return fail(EINVAL, "key or value");
	}
	err = bpf_map_update_elem(m.fd, kbuf, vbuf, BPF_ANY) ? errno : 0;
	close(m.fd);
	if (err)
		return fail(err, "map update");
	ok_raw("true");
}

static void op_delete(char **a)
{
	struct pinned_map m;
	int err;

	if (map_open(a[1], &m))
		return;
	if (m.info.key_size > sizeof(kbuf) || hex_in(a[2], kbuf, m.info.key_size)) {
		close(m.fd);
		return fail(EINVAL, "key");
	}
	err = bpf_map_delete_elem(m.fd, kbuf) ? errno : 0;
	close(m.fd);
	if (err && err != ENOENT)
		return fail(err, "map delete");
	ok_raw(err ? "false" : "true");
}

static void op_keys(char **a)
{
	struct pinned_map m;
	unsigned char prev[256], next[256];
	__u32 n = 0;

	if (map_open(a[1], &m))
		return;
	if (m.info.key_size > sizeof(prev)) {
		close(m.fd);
		return fail(E2BIG, "key size");
	}
	fputs("{\"ok\":[", stdout);
	/* bounded by the map's size: a concurrent writer cannot keep us here */
	while (n <= m.info.max_entries && !bpf_map_get_next_key(m.fd, n ? prev : NULL, next)) {
		if (n++)
			putchar(',');
		hex_out(next, m.info.key_size);
		memcpy(prev, next, m.info.key_size);
	}
	close(m.fd);
	fputs("]}\n", stdout);
}

/*
 * lock DIR MS: an exclusive flock on the pin directory, held until this
 * process exits; concurrent `node-toa bpf` runs queue here instead of
 * interleaving their map writes and attachments.
 */
static int lock_fd = -1;

static void op_lock(char **a)
{
	unsigned long timeout = strtoul(a[2], NULL, 10), waited = 0;
	int fd = open_dir(a[1]);

	if (fd < 0)
		return fail(errno, a[1]);
	while (flock(fd, LOCK_EX | LOCK_NB)) {
		if (errno != EWOULDBLOCK || waited >= timeout) {
			int err = errno == EWOULDBLOCK ? ETIMEDOUT : errno;

			close(fd);
			return fail(err, "another node-toa bpf command holds the lock");
		}
		usleep(20000);
		waited += 20;
	}
	if (lock_fd >= 0)
		close(lock_fd);
	lock_fd = fd;
	ok_raw("true");
}

static void op_info(char **a)
{
	(void)a;
	printf("{\"ok\":{\"cpus\":%d,\"libbpf\":\"%s\",\"types\":{\"sock_ops\":%d,\"getpeername4\":%d,"
	       "\"getpeername6\":%d,\"getsockopt\":%d}}}\n",
	       libbpf_num_possible_cpus(), libbpf_version_string(), BPF_CGROUP_SOCK_OPS,
	       BPF_CGROUP_INET4_GETPEERNAME, BPF_CGROUP_INET6_GETPEERNAME, BPF_CGROUP_GETSOCKOPT);
}

static const struct {
	const char *name;
	int argc;
	void (*fn)(char **);
} ops[] = {
	{ "open", 3, op_open }, { "load", 2, op_load }, { "close", 2, op_close },
	{ "prog", 3, op_prog }, { "progid", 2, op_progid }, { "attach", 5, op_attach },
	{ "update", 4, op_update }, { "link", 2, op_link }, { "query", 3, op_query },
	{ "detach", 4, op_detach }, { "mapinfo", 2, op_mapinfo }, { "lookup", 3, op_lookup },
	{ "set", 4, op_set }, { "delete", 3, op_delete }, { "keys", 2, op_keys },
	{ "lock", 3, op_lock }, { "info", 1, op_info }, { "named", 2, op_named },
	{ "links", 1, op_links },
};

int main(void)
{
	static char line[1 << 22];

	libbpf_set_print(collect);
	while (fgets(line, sizeof(line), stdin)) {
		char *a[8] = { 0 }, *save = NULL, *tok;
		int n = 0;
		size_t i;

		line[strcspn(line, "\n")] = 0;
		for (tok = strtok_r(line, "\t", &save); tok && n < 8; tok = strtok_r(NULL, "\t", &save))
			a[n++] = tok;
		log_reset();
		for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
			if (n && !strcmp(a[0], ops[i].name))
				break;
		}
		/* open takes an optional log level */
		if (i == sizeof(ops) / sizeof(ops[0]) || (n != ops[i].argc && !(ops[i].fn == op_open && n == 4)))
			fail(EINVAL, "bad request");
		else
			ops[i].fn(a);
		fflush(stdout);
	}
	return 0;
}

/*
 * glibc floor. Built on glibc 2.36, the binary would need 2.34 (crt1.o's
 * __libc_start_main) and 2.33 (fstat, a real symbol since then, called by
 * libelf/libbpf). The linker redirects both here (-Wl,--wrap, binding.gyp),
 * to symbols every glibc since the architecture's first has: 2.2.5 on
 * x86-64, 2.17 on arm64.
 */
#if defined(__x86_64__)
#define GLIBC_BASE "GLIBC_2.2.5"
#elif defined(__aarch64__)
#define GLIBC_BASE "GLIBC_2.17"
#endif

#ifdef GLIBC_BASE
#include <sys/stat.h>
#include <sys/syscall.h>

int __wrap_fstat(int fd, struct stat *st);
int __wrap_fstat(int fd, struct stat *st)
{
	/* struct stat is the kernel's on both architectures */
	return syscall(SYS_fstat, fd, st);
}

typedef int (*main_fn)(int, char **, char **);
typedef void (*init_fn)(int, char **, char **);
extern int libc_start_main_base(main_fn, int, char **, init_fn, void (*)(void), void (*)(void), void *);
__asm__(".symver libc_start_main_base,__libc_start_main@" GLIBC_BASE);
extern init_fn __preinit_array_start[], __preinit_array_end[];
extern init_fn __init_array_start[], __init_array_end[];

/*
 * What glibc < 2.34's crt passed as `init` (__libc_csu_init): the
 * constructors. 2.34's crt1.o passes NULL, which older glibc would take as
 * "none"; 2.34 and later still run a legacy init when one is given.
 */
static void run_constructors(int argc, char **argv, char **envp)
{
	init_fn *f;

	for (f = __preinit_array_start; f < __preinit_array_end; f++)
		(*f)(argc, argv, envp);
	for (f = __init_array_start; f < __init_array_end; f++)
		(*f)(argc, argv, envp);
}

int __wrap___libc_start_main(main_fn m, int argc, char **argv, init_fn init, void (*fini)(void),
			     void (*rtld_fini)(void), void *stack_end);
int __wrap___libc_start_main(main_fn m, int argc, char **argv, init_fn init, void (*fini)(void),
			     void (*rtld_fini)(void), void *stack_end)
{
	(void)init;
	return libc_start_main_base(m, argc, argv, run_constructors, fini, rtld_fini, stack_end);
}
#endif
