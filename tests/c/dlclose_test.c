/* A program that loads libsharedarea with dlopen, lets a thread take and
 * release an area's lock, closes the library while that thread still runs,
 * then lets the thread end: the library stays loaded (it is linked with
 * -z nodelete), so its thread-exit code is still there. Prints its checks in
 * abi_test's format ("N checks, 0 failures"). */
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>

typedef int32_t (*init_fn)(const char *);
typedef int32_t (*lock_fn)(int32_t);

static init_fn sa_init;
static lock_fn sa_wlock, sa_unlock;
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t c = PTHREAD_COND_INITIALIZER;
static int stage; /* 1: the thread locked and unlocked; 2: main closed the library */
static int checks, failures;

static void check(int ok, const char *what)
{
    checks++;
    if (!ok) {
        failures++;
        printf("FAIL: %s\n", what);
    }
}

static void *worker(void *arg)
{
    int32_t id = *(int32_t *)arg;
    check(sa_wlock(id) == 0, "wlock in the thread");
    check(sa_unlock(id) == 0, "unlock in the thread");
    pthread_mutex_lock(&m);
    stage = 1;
    pthread_cond_broadcast(&c);
    while (stage < 2)
        pthread_cond_wait(&c, &m);
    pthread_mutex_unlock(&m);
    return NULL; /* the thread's exit runs the library's exit destructor */
}

int main(int argc, char **argv)
{
    void *lib = dlopen(argc > 1 ? argv[1] : "libsharedarea.so", RTLD_NOW | RTLD_LOCAL);
    pthread_t t;
    int32_t id;
    if (!lib) {
        printf("dlopen: %s\n", dlerror());
        return 2;
    }
    sa_init = (init_fn)dlsym(lib, "sharedarea_init");
    sa_wlock = (lock_fn)dlsym(lib, "sharedarea_wlock");
    sa_unlock = (lock_fn)dlsym(lib, "sharedarea_unlock");
    check(sa_init && sa_wlock && sa_unlock, "symbols found");
    if (!sa_init || !sa_wlock || !sa_unlock)
        return 1;
    id = sa_init("1");
    check(id >= 0, "init");
    pthread_create(&t, NULL, worker, &id);
    pthread_mutex_lock(&m);
    while (stage < 1)
        pthread_cond_wait(&c, &m);
    pthread_mutex_unlock(&m);
    check(dlclose(lib) == 0, "dlclose");
    pthread_mutex_lock(&m);
    stage = 2;
    pthread_cond_broadcast(&c);
    pthread_mutex_unlock(&m);
    pthread_join(t, NULL);
    printf("dlclose_test: %d checks, %d failures\n", checks, failures);
    return failures != 0;
}
