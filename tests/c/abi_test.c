/*
 * The C ABI as a C user sees it: include/sharedarea.h compiled as strict C99
 * (-Wall -Wextra -Wpedantic -Werror), linked against libsharedarea, run as a real
 * process that forks. Run by tests/c_program.rs; exits 0 when every check passed,
 * 1 otherwise, printing one line per failed check.
 */
#define _POSIX_C_SOURCE 200809L

#include "sharedarea.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int failures = 0;
static int checks = 0;

#define CHECK(cond, ...)                                                         \
    do {                                                                         \
        checks++;                                                                \
        if (!(cond)) {                                                           \
            failures++;                                                          \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);      \
            fprintf(stderr, __VA_ARGS__);                                        \
            fprintf(stderr, " [last_error: %s]\n", sharedarea_last_error());     \
        }                                                                        \
    } while (0)

#define CHECK_EQ(got, want)                                                      \
    CHECK((long long)(got) == (long long)(want), "got %lld, want %lld",          \
          (long long)(got), (long long)(want))

static void test_version(void)
{
    CHECK_EQ(sharedarea_abi_version(), SHAREDAREA_ABI_VERSION);
    CHECK_EQ(SHAREDAREA_ABI_VERSION, 1);
}

static void test_statuses(void)
{
    int32_t all[] = {SHAREDAREA_OK, SHAREDAREA_RECOVERED, SHAREDAREA_E_NO_SUCH_AREA,
                     SHAREDAREA_E_OUT_OF_RANGE, SHAREDAREA_E_INVALID_SPEC, SHAREDAREA_E_IO,
                     SHAREDAREA_E_TIMED_OUT, SHAREDAREA_E_LOCK_MISUSE, SHAREDAREA_E_INTERRUPTED,
                     SHAREDAREA_E_NULL_POINTER, SHAREDAREA_E_INVALID_ARGUMENT, SHAREDAREA_E_PANIC,
                     SHAREDAREA_E_LIMIT, SHAREDAREA_E_PEER_CLOSED, SHAREDAREA_E_NOT_AN_AREA};
    size_t n = sizeof all / sizeof all[0];
    size_t i, j;
    for (i = 0; i < n; i++) {
        const char *t = sharedarea_strerror(all[i]);
        CHECK(t != NULL && t[0] != '\0', "strerror(%d)", (int)all[i]);
        for (j = 0; j < i; j++)
            CHECK(strcmp(t, sharedarea_strerror(all[j])) != 0, "strerror(%d) == strerror(%d)",
                  (int)all[i], (int)all[j]);
    }
    CHECK(sharedarea_strerror(-12345) != NULL, "unknown status");
    CHECK_EQ(SHAREDAREA_E_NOT_AN_AREA, -13);
    CHECK_EQ(SHAREDAREA_BACKING_ANONYMOUS, 0);
    CHECK_EQ(SHAREDAREA_BACKING_POINTER, 4);
}

static void test_basic_ops(void)
{
    int32_t before = sharedarea_count();
    int32_t id = sharedarea_init("4");
    struct sharedarea_info info;
    char buf[64];
    int8_t v8 = 0;
    int16_t v16 = 0;
    int32_t v32 = 0;
    int64_t v64 = 0;
    uint64_t n = 0, u0 = 0, u1 = 0;
    long ps = sysconf(_SC_PAGESIZE);

    CHECK(id >= 0, "init(\"4\") = %d", (int)id);
    if (id < 0)
        return;
    CHECK_EQ(sharedarea_count(), before + 1);
    memset(&info, 0, sizeof info);
    CHECK_EQ(sharedarea_info(id, &info), SHAREDAREA_OK);
    CHECK_EQ(info.size, 4 * ps);
    CHECK_EQ(info.pages, 4);
    CHECK_EQ(info.page_size, ps);
    CHECK_EQ(info.backing, SHAREDAREA_BACKING_ANONYMOUS);

    CHECK_EQ(sharedarea_updates(id, &u0), SHAREDAREA_OK);
    CHECK_EQ(sharedarea_write(id, 10, "hello world", 11), SHAREDAREA_OK);
    memset(buf, 0, sizeof buf);
    CHECK_EQ(sharedarea_read(id, 10, buf, 11), 11);
    CHECK(memcmp(buf, "hello world", 11) == 0, "read back '%s'", buf);
    CHECK_EQ(sharedarea_read(id, 4 * ps - 2, buf, 4), SHAREDAREA_E_OUT_OF_RANGE);
    CHECK(strstr(sharedarea_last_error(), "sharedarea_read: area ") == sharedarea_last_error(),
          "last_error prefix: %s", sharedarea_last_error());
    CHECK_EQ(sharedarea_read(id, UINT64_MAX, buf, 2), SHAREDAREA_E_OUT_OF_RANGE);
    CHECK_EQ(sharedarea_write(id, UINT64_MAX, "ab", 2), SHAREDAREA_E_OUT_OF_RANGE);

    CHECK_EQ(sharedarea_write8(id, 0, (int8_t)-1), SHAREDAREA_OK);
    CHECK_EQ(sharedarea_read8(id, 0, &v8), SHAREDAREA_OK);
    CHECK_EQ(v8, -1);
    CHECK_EQ(sharedarea_write16(id, 1, (int16_t)-300), SHAREDAREA_OK);
    CHECK_EQ(sharedarea_read16(id, 1, &v16), SHAREDAREA_OK);
    CHECK_EQ(v16, -300);
    CHECK_EQ(sharedarea_write32(id, 3, INT32_MIN), SHAREDAREA_OK);
    CHECK_EQ(sharedarea_read32(id, 3, &v32), SHAREDAREA_OK);
    CHECK_EQ(v32, INT32_MIN);
    CHECK_EQ(sharedarea_write64(id, 7, INT64_MAX), SHAREDAREA_OK);
    CHECK_EQ(sharedarea_inc64(id, 7, 1, &v64), SHAREDAREA_OK);
    CHECK_EQ(v64, INT64_MIN);
    CHECK_EQ(sharedarea_dec64(id, 7, 1, NULL), SHAREDAREA_OK);
    CHECK_EQ(sharedarea_read64(id, 7, &v64), SHAREDAREA_OK);
    CHECK_EQ(v64, INT64_MAX);
    CHECK_EQ(sharedarea_inc8(id, 0, 1, &v8), SHAREDAREA_OK);
    CHECK_EQ(v8, 0);
    CHECK_EQ(sharedarea_inc64(id, 4 * ps - 7, 1, NULL), SHAREDAREA_E_OUT_OF_RANGE);
    CHECK_EQ(sharedarea_inc64(id, 4 * ps - 8, 1, NULL), SHAREDAREA_OK);
    CHECK_EQ(sharedarea_update(id), SHAREDAREA_OK);
    CHECK_EQ(sharedarea_updates(id, &u1), SHAREDAREA_OK);
    CHECK_EQ(u1 - u0, 10);

    CHECK_EQ(sharedarea_extent(id, 0, 0, &n), SHAREDAREA_OK);
    CHECK_EQ(n, 4 * ps);
    CHECK_EQ(sharedarea_set_used(id, 100), SHAREDAREA_OK);
    CHECK_EQ(sharedarea_extent(id, 30, 0, &n), SHAREDAREA_OK);
    CHECK_EQ(n, 70);
    CHECK_EQ(sharedarea_honour_used(id, 0), SHAREDAREA_OK);
    CHECK_EQ(sharedarea_info(id, &info), SHAREDAREA_OK);
    CHECK_EQ(info.used, 100);
    CHECK_EQ(info.honour_used, 0);

    /* NULL pointers */
    CHECK_EQ(sharedarea_init(NULL), SHAREDAREA_E_NULL_POINTER);
    CHECK_EQ(sharedarea_read(id, 0, NULL, 4), SHAREDAREA_E_NULL_POINTER);
    CHECK_EQ(sharedarea_write(id, 0, NULL, 4), SHAREDAREA_E_NULL_POINTER);
    CHECK_EQ(sharedarea_read64(id, 0, NULL), SHAREDAREA_E_NULL_POINTER);
    CHECK_EQ(sharedarea_info(id, NULL), SHAREDAREA_E_NULL_POINTER);
    CHECK_EQ(sharedarea_init_ptr(NULL, 10), SHAREDAREA_E_NULL_POINTER);
    /* no such area */
    CHECK_EQ(sharedarea_read8(9999, 0, &v8), SHAREDAREA_E_NO_SUCH_AREA);
    CHECK_EQ(sharedarea_wlock(-1), SHAREDAREA_E_NO_SUCH_AREA);
}

static void test_spec_errors(void)
{
    const char *bad[] = {"0", "", "foo=1", "pages=1,pages=1", "pages=x", "size=0", "ptr=0x1234,size=4096",
                         "18446744073709551615", "size=100,pages=0"};
    size_t i;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int32_t before = sharedarea_count();
        int32_t st = sharedarea_init(bad[i]);
        CHECK(st == SHAREDAREA_E_INVALID_SPEC || st == SHAREDAREA_E_IO, "init(\"%s\") = %d", bad[i], (int)st);
        CHECK_EQ(sharedarea_count(), before);
        CHECK(strncmp(sharedarea_last_error(), "sharedarea_init: ", 17) == 0, "last_error for \"%s\"", bad[i]);
    }
}

static void test_locks(void)
{
    int32_t id = sharedarea_init("pages=1");
    int64_t v = 0;
    char c = 'x';
    CHECK(id >= 0, "init");
    if (id < 0)
        return;
    CHECK_EQ(sharedarea_unlock(id), SHAREDAREA_E_LOCK_MISUSE);
    CHECK_EQ(sharedarea_wlock(id), SHAREDAREA_OK);
    CHECK_EQ(sharedarea_write(id, 0, &c, 1), SHAREDAREA_OK);
    CHECK_EQ(sharedarea_inc64(id, 8, 1, &v), SHAREDAREA_OK);
    CHECK_EQ(sharedarea_wlock(id), SHAREDAREA_OK);
    CHECK_EQ(sharedarea_unlock(id), SHAREDAREA_OK);
    CHECK_EQ(sharedarea_unlock(id), SHAREDAREA_OK);
    CHECK_EQ(sharedarea_rlock(id), SHAREDAREA_OK);
    CHECK_EQ(sharedarea_read64(id, 8, &v), SHAREDAREA_OK);
    CHECK_EQ(sharedarea_write(id, 0, &c, 1), SHAREDAREA_E_LOCK_MISUSE);
    CHECK_EQ(sharedarea_wlock(id), SHAREDAREA_E_LOCK_MISUSE);
    CHECK_EQ(sharedarea_unlock(id), SHAREDAREA_OK);
    CHECK_EQ(sharedarea_unlock(id), SHAREDAREA_E_LOCK_MISUSE);
}

static void test_ptr_and_fd(void)
{
    static unsigned char mem[1000];
    char path[] = "/tmp/sa-abi-test-XXXXXX";
    int fd;
    int32_t id;
    char buf[8];
    struct sharedarea_info info;

    id = sharedarea_init_ptr(mem, sizeof mem);
    CHECK(id >= 0, "init_ptr = %d", (int)id);
    if (id >= 0) {
        CHECK_EQ(sharedarea_write(id, 996, "tail", 4), SHAREDAREA_OK);
        CHECK(memcmp(mem + 996, "tail", 4) == 0, "bytes in caller memory");
        CHECK_EQ(sharedarea_info(id, &info), SHAREDAREA_OK);
        CHECK_EQ(info.backing, SHAREDAREA_BACKING_POINTER);
        CHECK_EQ(info.size, 1000);
    }

    fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    if (fd < 0)
        return;
    CHECK_EQ(write(fd, "0123456789", 10), 10);
    id = sharedarea_init_fd(fd, 0, 0);
    CHECK(id >= 0, "init_fd = %d", (int)id);
    if (id >= 0) {
        CHECK_EQ(sharedarea_info(id, &info), SHAREDAREA_OK);
        CHECK_EQ(info.size, 10);
        CHECK_EQ(info.backing, SHAREDAREA_BACKING_FD);
        CHECK_EQ(sharedarea_write(id, 2, "AB", 2), SHAREDAREA_OK);
        CHECK_EQ(pread(fd, buf, 4, 0), 4);
        CHECK(memcmp(buf, "01AB", 4) == 0, "file bytes");
    }
    close(fd);
    unlink(path);
}

static void test_fork_counting(void)
{
    int32_t id = sharedarea_init("1");
    pid_t kids[2];
    int k, i, status;
    int64_t total = 0;
    CHECK(id >= 0, "init");
    if (id < 0)
        return;
    for (k = 0; k < 2; k++) {
        kids[k] = fork();
        if (kids[k] == 0) {
            alarm(60);
            for (i = 0; i < 20000; i++)
                if (sharedarea_inc64(id, 3, 1, NULL) != SHAREDAREA_OK)
                    _exit(2);
            _exit(0);
        }
    }
    for (k = 0; k < 2; k++) {
        CHECK_EQ(waitpid(kids[k], &status, 0), kids[k]);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
    }
    CHECK_EQ(sharedarea_read64(id, 3, &total), SHAREDAREA_OK);
    CHECK_EQ(total, 40000);
}

static void test_wait(void)
{
    int32_t id = sharedarea_init("1");
    uint64_t seen = 0;
    pid_t kid;
    int status;
    struct timespec t0, t1;
    double ms;
    CHECK(id >= 0, "init");
    if (id < 0)
        return;
    CHECK_EQ(sharedarea_wait(id, 100, -1), SHAREDAREA_E_INVALID_ARGUMENT);
    CHECK_EQ(sharedarea_updates(id, &seen), SHAREDAREA_OK);
    CHECK_EQ(sharedarea_wait_since(id, seen + 1, 0), SHAREDAREA_OK);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK_EQ(sharedarea_wait_since(id, seen, 100), SHAREDAREA_E_TIMED_OUT);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
    CHECK(ms >= 95 && ms < 600, "wait_since 100 ms took %.1f ms", ms);

    kid = fork();
    if (kid == 0) {
        struct timespec d = {0, 100 * 1000 * 1000};
        nanosleep(&d, NULL);
        _exit(sharedarea_write(id, 0, "w", 1) == SHAREDAREA_OK ? 0 : 2);
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK_EQ(sharedarea_wait(id, 1000, 5), SHAREDAREA_OK);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
    CHECK(ms < 600, "woken after %.1f ms", ms);
    CHECK_EQ(waitpid(kid, &status, 0), kid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "writer child status %d", status);
}

static void test_ws(void)
{
    int32_t id = sharedarea_init("1");
    int sv[2];
    unsigned char got[16];
    CHECK(id >= 0, "init");
    if (id < 0)
        return;
    CHECK_EQ(sharedarea_write(id, 0, "0123456789", 10), SHAREDAREA_OK);
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    CHECK_EQ(sharedarea_ws_send_from_area(sv[0], 1, id, 3, 5), 5);
    CHECK_EQ(read(sv[1], got, 7), 7);
    CHECK(got[0] == 0x81 && got[1] == 5 && memcmp(got + 2, "34567", 5) == 0, "frame bytes");
    CHECK_EQ(sharedarea_ws_send(sv[0], 2, "abc", 3), 3);
    CHECK_EQ(read(sv[1], got, 5), 5);
    CHECK(got[0] == 0x82 && got[1] == 3 && memcmp(got + 2, "abc", 3) == 0, "frame bytes");
    CHECK_EQ(sharedarea_ws_send_from_area(sv[0], 2, id, 4090, 7), SHAREDAREA_E_OUT_OF_RANGE);
    close(sv[1]);
    CHECK_EQ(sharedarea_ws_send_from_area(sv[0], 2, id, 0, 5), SHAREDAREA_E_PEER_CLOSED);
    close(sv[0]);
}

static void test_named_unlink(void)
{
    char spec[96], name[64];
    int32_t id;
    int64_t v = 0;
    snprintf(name, sizeof name, "sa-abi-test-%ld", (long)getpid());
    snprintf(spec, sizeof spec, "name=%s,size=4096", name);
    id = sharedarea_init(spec);
    CHECK(id >= 0, "init %s", spec);
    if (id < 0)
        return;
    CHECK_EQ(sharedarea_unlink(name), SHAREDAREA_OK);
    CHECK_EQ(sharedarea_unlink(name), SHAREDAREA_E_NO_SUCH_AREA);
    CHECK(strstr(sharedarea_last_error(), name) != NULL, "last_error names %s", name);
    CHECK_EQ(sharedarea_inc64(id, 0, 2, &v), SHAREDAREA_OK); /* still attached */
    CHECK_EQ(v, 2);
    CHECK_EQ(sharedarea_unlink(NULL), SHAREDAREA_E_NULL_POINTER);
    CHECK_EQ(sharedarea_unlink("a/b"), SHAREDAREA_E_INVALID_ARGUMENT);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    alarm(120); /* never hang */
    test_version();
    test_statuses();
    test_basic_ops();
    test_spec_errors();
    test_locks();
    test_ptr_and_fd();
    test_fork_counting();
    test_wait();
    test_ws();
    test_named_unlink();
    printf("abi_test: %d checks, %d failures\n", checks, failures);
    return failures == 0 ? 0 : 1;
}
