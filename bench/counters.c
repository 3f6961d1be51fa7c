/* Counters that scale: P processes, each bumping its own integer (its own cache
 * line) in one area, against the same on plain hardware atomics in a MAP_SHARED
 * page, measured side by side in one run through the shared library, as C users
 * call it. Also: write64 alone against write64 with many idle attached processes.
 *
 *   bench/counters            (builds with cc against target/release, then runs)
 *
 * Prints throughput (M ops/s in all), the scaling against one process, and the
 * ratio of SharedArea's scaling to the hardware's. Totals are checked exactly.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sharedarea.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

enum { LINE = 64, MAXP = 64 };

struct shared {
    _Atomic int go;
    _Atomic int ready;
    double secs[MAXP];
    _Alignas(64) _Atomic int64_t hw[MAXP * 8]; /* one line per process */
};

static struct shared *sh;
static int area;

typedef void (*worker_fn)(int me, uint64_t n);

static void hw_inc(int me, uint64_t n) {
    _Atomic int64_t *c = &sh->hw[me * 8];
    for (uint64_t i = 0; i < n; i++) atomic_fetch_add_explicit(c, 1, memory_order_seq_cst);
}

static void sa_inc(int me, uint64_t n) {
    for (uint64_t i = 0; i < n; i++)
        if (sharedarea_inc64(area, (uint64_t)me * LINE, 1, NULL) != 0) _exit(3);
}

static void sa_write(int me, uint64_t n) {
    for (uint64_t i = 0; i < n; i++)
        if (sharedarea_write64(area, (uint64_t)me * LINE, (int64_t)i) != 0) _exit(3);
}

static void sa_read(int me, uint64_t n) {
    int64_t v, sum = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (sharedarea_read64(area, (uint64_t)me * LINE, &v) != 0) _exit(3);
        sum += v;
    }
    if (sum == 42) fputc(' ', stderr);
}

/* Runs P processes of f, n ops each; returns total ops per second. */
static double run(int p, worker_fn f, uint64_t n) {
    atomic_store(&sh->go, 0);
    atomic_store(&sh->ready, 0);
    pid_t kids[MAXP];
    for (int i = 0; i < p; i++) {
        kids[i] = fork();
        if (kids[i] == 0) {
            atomic_fetch_add(&sh->ready, 1);
            while (!atomic_load(&sh->go)) {}
            double t = now();
            f(i, n);
            sh->secs[i] = now() - t;
            _exit(0);
        }
    }
    while (atomic_load(&sh->ready) < p) usleep(100);
    atomic_store(&sh->go, 1);
    double longest = 0;
    for (int i = 0; i < p; i++) {
        int st;
        waitpid(kids[i], &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "worker failed: %s\n", sharedarea_last_error());
            exit(1);
        }
        if (sh->secs[i] > longest) longest = sh->secs[i];
    }
    return (double)n * p / longest;
}

static double best(int reps, int p, worker_fn f, uint64_t n) {
    double b = 0;
    for (int r = 0; r < reps; r++) {
        double x = run(p, f, n);
        if (x > b) b = x;
    }
    return b;
}

int main(void) {
    sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    area = sharedarea_init("1");
    if (area < 0 || sh == MAP_FAILED) {
        fprintf(stderr, "init: %s\n", sharedarea_last_error());
        return 1;
    }
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    printf("counters: P processes, each on its own aligned int64 in one area (%ld CPUs)\n", cpus);
    printf("%-34s %3s %12s %9s %14s\n", "operation", "P", "M ops/s", "scaling", "vs hardware");
    const uint64_t n = 2000000;
    const int reps = 3;
    int ps[] = {1, 2, 8};
    double hw1 = 0, inc1 = 0, wr1 = 0, rd1 = 0;
    for (int k = 0; k < 3; k++) {
        int p = ps[k];
        for (int i = 0; i < MAXP * 8; i++) atomic_store(&sh->hw[i], 0);
        for (int i = 0; i < p; i++) sharedarea_write64(area, (uint64_t)i * LINE, 0);
        double hw = best(reps, p, hw_inc, n);
        double inc = best(reps, p, sa_inc, n);
        double wr = best(reps, p, sa_write, n);
        double rd = best(reps, p, sa_read, n);
        for (int i = 0; i < p; i++) {
            int64_t v;
            sharedarea_read64(area, (uint64_t)i * LINE, &v);
            (void)v;
        }
        /* exactness: a fresh pass of inc on zeroed counters */
        for (int i = 0; i < p; i++) sharedarea_write64(area, (uint64_t)i * LINE, 0);
        run(p, sa_inc, 100000);
        for (int i = 0; i < p; i++) {
            int64_t v;
            sharedarea_read64(area, (uint64_t)i * LINE, &v);
            if (v != 100000) {
                printf("counter %d = %" PRId64 ", expected 100000: NOT EXACT\n", i, v);
                return 1;
            }
        }
        if (p == 1) { hw1 = hw; inc1 = inc; wr1 = wr; rd1 = rd; }
        double hs = hw / hw1;
        printf("%-34s %3d %12.1f %8.2fx %14s\n", "hardware fetch_add (MAP_SHARED)", p, hw / 1e6, hs, "");
        char buf[64];
        snprintf(buf, sizeof buf, "%.2fx", (inc / inc1) / hs);
        printf("%-34s %3d %12.1f %8.2fx %14s\n", "sharedarea_inc64", p, inc / 1e6, inc / inc1, buf);
        snprintf(buf, sizeof buf, "%.2fx", (wr / wr1) / hs);
        printf("%-34s %3d %12.1f %8.2fx %14s\n", "sharedarea_write64", p, wr / 1e6, wr / wr1, buf);
        snprintf(buf, sizeof buf, "%.2fx", (rd / rd1) / hs);
        printf("%-34s %3d %12.1f %8.2fx %14s\n", "sharedarea_read64", p, rd / 1e6, rd / rd1, buf);
    }
    printf("(totals exact at every P; 'vs hardware' = SharedArea's scaling / the hardware's; target >= 0.8x)\n\n");

    /* write64's cost with many idle attached processes. */
    const int idle = 250;
    double alone = 1e9 / best(5, 1, sa_write, n);
    int pipefd[2];
    if (pipe(pipefd) != 0) return 1;
    pid_t *kids = calloc(idle, sizeof *kids);
    for (int i = 0; i < idle; i++) {
        kids[i] = fork();
        if (kids[i] == 0) {
            close(pipefd[1]);
            sharedarea_rlock(area); /* takes a slot */
            sharedarea_unlock(area);
            char c;
            (void)read(pipefd[0], &c, 1);
            _exit(0);
        }
    }
    struct sharedarea_lock_info li;
    for (int t = 0; t < 1000; t++) {
        sharedarea_lock_info(area, &li);
        if (li.processes >= (uint32_t)idle + 1) break;
        usleep(5000);
    }
    double crowded = 1e9 / best(5, 1, sa_write, n);
    close(pipefd[1]);
    for (int i = 0; i < idle; i++) waitpid(kids[i], NULL, 0);
    printf("%-50s %8.1f ns\n", "sharedarea_write64, alone", alone);
    printf("%-50s %8.1f ns  %.2fx alone (target <= 1.2x)\n", "sharedarea_write64, 250 idle attached processes", crowded, crowded / alone);
    return 0;
}
