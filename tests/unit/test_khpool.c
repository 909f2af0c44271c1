/* Unit tests for khpool.c's queue: the workers take one job from each
 * tenant's lane in turn, so one tenant's backlog does not delay another
 * tenant's job behind all of it; within a lane jobs start in order. The pool
 * runs one worker on a database that cannot be reached (a socket directory
 * that does not exist): each job then gets conn NULL at once, which is all
 * these jobs need. */
#include "khpool.h"

#include <check.h>
#include <event2/thread.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static bool released, gate_started;
static char order[64][8];
static int nstarted, ndone, nwant, with_conn;
static struct event_base *base;

/* the first job: holds the one worker until released, so that every other
 * job is queued before any of them starts */
static void gate_work(PGconn *c, void *arg)
{
    (void)c;
    (void)arg;
    pthread_mutex_lock(&mu);
    gate_started = true;
    pthread_cond_broadcast(&cv);
    while (!released)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
}

static void named_work(PGconn *c, void *arg)
{
    pthread_mutex_lock(&mu);
    with_conn += c != NULL; /* asserted on the main thread: no database here */
    snprintf(order[nstarted++], sizeof order[0], "%s", (const char *)arg);
    pthread_mutex_unlock(&mu);
}

static void one_done(void *arg)
{
    (void)arg;
    if (++ndone == nwant)
        event_base_loopbreak(base);
}

static void noop(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

static kh_pool *pool_held(void)
{
    ck_assert_int_eq(evthread_use_pthreads(), 0);
    base = event_base_new();
    ck_assert_ptr_nonnull(base);
    kh_pool *p =
        kh_pool_new(base, "host=/nonexistent/khpool-test dbname=none connect_timeout=1", 1, 64, 0);
    ck_assert_ptr_nonnull(p);
    released = gate_started = false;
    nstarted = ndone = with_conn = 0;
    ck_assert_int_eq(kh_pool_submit_for(p, "A", gate_work, one_done, NULL), 0);
    /* the worker holds the gate: nothing else is taken until released */
    pthread_mutex_lock(&mu);
    while (!gate_started)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    return p;
}

static void release_and_run(kh_pool *p, int jobs)
{
    nwant = jobs;
    pthread_mutex_lock(&mu);
    released = true;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    /* the loop waits for the done callbacks: a timer keeps it running, as
     * the gateway's listeners do */
    struct event *keep = event_new(base, -1, EV_PERSIST, noop, NULL);
    struct timeval sec = {1, 0};
    ck_assert_int_eq(event_add(keep, &sec), 0);
    event_base_dispatch(base);
    event_free(keep);
    ck_assert_int_eq(ndone, jobs);
    ck_assert_int_eq(with_conn, 0);
    kh_pool_free(p);
    event_base_free(base);
}

START_TEST(lanes_take_turns)
{
    static const char *a[] = {"A1", "A2", "A3", "A4", "A5"};
    kh_pool *p = pool_held();
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(kh_pool_submit_for(p, "A", named_work, one_done, (void *)a[i]), 0);
    ck_assert_int_eq(kh_pool_submit_for(p, "B", named_work, one_done, "B1"), 0);
    ck_assert_int_eq(kh_pool_submit(p, named_work, one_done, "P1"), 0); /* the platform's lane */
    ck_assert_int_eq(kh_pool_submit_for(p, "B", named_work, one_done, "B2"), 0);
    release_and_run(p, 9);
    /* A's backlog was there first; B and the platform each get their turn
     * after one of A's, not after all five */
    static const char *want[] = {"A1", "B1", "P1", "A2", "B2", "A3", "A4", "A5"};
    ck_assert_int_eq(nstarted, 8);
    for (int i = 0; i < 8; i++)
        ck_assert_msg(strcmp(order[i], want[i]) == 0, "job %d: %s, expected %s", i, order[i],
                      want[i]);
}
END_TEST

START_TEST(one_lane_keeps_its_order)
{
    static const char *a[] = {"A1", "A2", "A3", "A4", "A5", "A6"};
    kh_pool *p = pool_held();
    for (int i = 0; i < 6; i++)
        ck_assert_int_eq(kh_pool_submit_for(p, "A", named_work, one_done, (void *)a[i]), 0);
    release_and_run(p, 7);
    for (int i = 0; i < 6; i++)
        ck_assert_str_eq(order[i], a[i]);
}
END_TEST

START_TEST(queue_bound_holds_across_lanes)
{
    ck_assert_int_eq(evthread_use_pthreads(), 0);
    base = event_base_new();
    kh_pool *p = kh_pool_new(base, "host=/nonexistent/khpool-test dbname=none", 1, 3, 0);
    ck_assert_ptr_nonnull(p);
    released = false;
    nstarted = ndone = with_conn = 0;
    ck_assert_int_eq(kh_pool_submit_for(p, "A", gate_work, one_done, NULL), 0);
    ck_assert_int_eq(kh_pool_submit_for(p, "B", named_work, one_done, "B1"), 0);
    ck_assert_int_eq(kh_pool_submit_for(p, "C", named_work, one_done, "C1"), 0);
    /* three queued or running: a fourth is refused whatever its lane */
    ck_assert_int_eq(kh_pool_submit_for(p, "D", named_work, one_done, "D1"), -1);
    ck_assert_int_eq(kh_pool_submit(p, named_work, one_done, "P1"), -1);
    release_and_run(p, 3);
    ck_assert_int_eq(nstarted, 2);
}
END_TEST

/* Tenants routed to databases of their own: each tenant's conninfo found
 * again, a tenant routed to one database only; once jobs may run, a tenant
 * added later is routed to a database the pool has, never to a new one. */
START_TEST(routes_new_databases_before_first_job)
{
    ck_assert_int_eq(evthread_use_pthreads(), 0);
    base = event_base_new();
    const char *home = "host=/nonexistent/khpool-test dbname=home connect_timeout=1";
    const char *other = "host=/nonexistent/khpool-test dbname=other connect_timeout=1";
    kh_pool *p = kh_pool_new(base, home, 1, 8, 0);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(kh_pool_route(p, "S00001", other), 0);
    ck_assert_int_eq(kh_pool_route(p, "S00002", other), 0);  /* a database shared */
    ck_assert_int_eq(kh_pool_route(p, "S00001", home), -1);  /* routed once */
    ck_assert_int_eq(kh_pool_route(p, "S00001", other), 0);  /* the same route again */
    ck_assert_int_eq(kh_pool_route(p, "131016", home), 0);   /* the home, routed too */
    ck_assert_int_eq(kh_pool_route(p, "131016", other), -1); /* ... and kept there */
    ck_assert_int_eq(kh_pool_route(p, "", other), -1);
    ck_assert_int_eq(kh_pool_route(p, "0123456789ABCDEF", other), -1);
    ck_assert_str_eq(kh_pool_conninfo(p, "S00001"), other);
    ck_assert_str_eq(kh_pool_conninfo(p, "S00002"), other);
    ck_assert_str_eq(kh_pool_conninfo(p, "131016"), home); /* no route: the home */
    ck_assert_str_eq(kh_pool_conninfo(p, NULL), home);
    released = true;
    nstarted = ndone = with_conn = 0;
    nwant = 1;
    ck_assert_int_eq(kh_pool_submit_for(p, "S00001", named_work, one_done, "S1"), 0);
    ck_assert_int_eq(kh_pool_route(p, "S00003", "dbname=third"), -1); /* a new database: too late */
    ck_assert_int_eq(kh_pool_route(p, "S00003", other), 0); /* one the pool has: a tenant added */
    ck_assert_str_eq(kh_pool_conninfo(p, "S00003"), other);
    ck_assert_str_eq(kh_pool_conninfo(p, "131016"), home);
    struct event *keep = event_new(base, -1, EV_PERSIST, noop, NULL);
    struct timeval sec = {1, 0};
    ck_assert_int_eq(event_add(keep, &sec), 0);
    event_base_dispatch(base);
    event_free(keep);
    ck_assert_int_eq(ndone, 1);
    kh_pool_free(p);
    event_base_free(base);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("khpool");
    TCase *tc = tcase_create("queue");
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, lanes_take_turns);
    tcase_add_test(tc, one_lane_keeps_its_order);
    tcase_add_test(tc, queue_bound_holds_across_lanes);
    tcase_add_test(tc, routes_new_databases_before_first_job);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
