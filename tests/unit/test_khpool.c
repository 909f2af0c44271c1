/* Unit tests for gateway/core/khpool.c on the loop kh_http_base_new makes:
 * finished jobs come back one callback at a time, and the loop looks for
 * I/O after each, so that a listener's socket (KH_PRIO_IO) that becomes
 * readable meanwhile is served before the next completion, not after a
 * whole batch of them. No database is needed: a
 * worker that cannot connect runs its job with conn NULL. */
#include "khhttp.h"
#include "khpool.h"

#include <check.h>
#include <event2/thread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define NJOBS 4

typedef struct {
    struct event_base *base;
    struct event *io;
    int pair[2]; /* a byte written to pair[0] makes io (on pair[1]) ready */
    atomic_int worked;
    int ndone;
    char order[16]; /* 'd' a completion, 'i' the I/O event */
    size_t n;
} run;

static run R;

static void work(PGconn *conn, void *arg)
{
    ck_assert_ptr_null(conn);
    (void)arg;
    atomic_fetch_add(&R.worked, 1);
}

static void note(char c)
{
    ck_assert_uint_lt(R.n, sizeof R.order - 1);
    R.order[R.n++] = c;
}

static void done(void *arg)
{
    (void)arg;
    note('d');
    if (++R.ndone == 1)
        ck_assert_int_eq(write(R.pair[0], "x", 1), 1); /* as a client's request arriving now */
    if (R.ndone == NJOBS)
        event_base_loopexit(R.base, NULL);
}

static void io_ready(evutil_socket_t fd, short what, void *arg)
{
    char c;
    (void)what;
    (void)arg;
    ck_assert_int_eq(read(fd, &c, 1), 1);
    note('i');
}

START_TEST(completions_yield_to_io)
{
    memset(&R, 0, sizeof R);
    ck_assert_int_eq(evthread_use_pthreads(), 0);
    R.base = kh_http_base_new();
    ck_assert_ptr_nonnull(R.base);
    ck_assert_int_eq(event_base_get_npriorities(R.base), 2);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, R.pair), 0);
    R.io = event_new(R.base, R.pair[1], EV_READ, io_ready, NULL);
    ck_assert_ptr_nonnull(R.io);
    ck_assert_int_eq(event_priority_set(R.io, KH_PRIO_IO), 0);
    ck_assert_int_eq(event_add(R.io, NULL), 0);
    kh_pool *p =
        kh_pool_new(R.base, "host=/nonexistent-kh-test dbname=none connect_timeout=1", 1, NJOBS, 0);
    ck_assert_ptr_nonnull(p);
    for (int i = 0; i < NJOBS; i++)
        ck_assert_int_eq(kh_pool_submit(p, work, done, NULL), 0);
    /* the queue is bounded: one more is refused */
    ck_assert_int_eq(kh_pool_submit(p, work, done, NULL), -1);
    /* every job finished before the loop runs: a batch is waiting */
    for (int i = 0; i < 500 && atomic_load(&R.worked) < NJOBS; i++)
        usleep(10000);
    ck_assert_int_eq(atomic_load(&R.worked), NJOBS);
    usleep(50000); /* the last job is handed back after its work */
    ck_assert_int_eq(event_base_dispatch(R.base), 0);
    R.order[R.n] = '\0';
    /* handed back as a batch, it would have been "ddddi" */
    ck_assert_str_eq(R.order, "diddd");
    kh_pool_free(p);
    event_free(R.io);
    close(R.pair[0]);
    close(R.pair[1]);
    event_base_free(R.base);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("khpool");
    TCase *tc = tcase_create("loop");
    tcase_add_test(tc, completions_yield_to_io);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
