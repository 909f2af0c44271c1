/* Unit tests for tools/khrouter_ep.c: which node of a gateway the router
 * sends to next (round robin over those up, failover to one not tried yet,
 * a down one only when no other is left, none after a 503 unless one is up),
 * and the table of distinct endpoints. */
#include "khrouter_ep.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>

START_TEST(table)
{
    int a = khr_ep_add("gw-t1", "127.0.0.1:1");
    ck_assert_int_ge(a, 0);
    ck_assert_int_eq(khr_ep_add("gw-t1", "127.0.0.1:1"), a); /* the same one again */
    int b = khr_ep_add("gw-t2", "127.0.0.1:1");              /* another gateway's name */
    ck_assert_int_ne(b, a);
    ck_assert_str_eq(khr_ep_hostport(a), "127.0.0.1:1");
    ck_assert_str_eq(khr_ep_gateway(b), "gw-t2");
    ck_assert(khr_ep_up(a)); /* listed: expected to serve until it fails */
    char longname[KHR_EP_LEN + 1];
    for (size_t i = 0; i < sizeof longname - 1; i++)
        longname[i] = 'x';
    longname[KHR_EP_LEN] = '\0';
    ck_assert_int_eq(khr_ep_add(longname, "127.0.0.1:2"), -1);
    ck_assert_int_eq(khr_ep_add("gw-t1", longname), -1);
    ck_assert_str_eq(khr_ep_hostport(-1), "");
    ck_assert_str_eq(khr_ep_hostport(KHR_MAX_EP), "");
    ck_assert(!khr_ep_up(KHR_MAX_EP));
}
END_TEST

START_TEST(pick)
{
    int idx[3];
    char hp[32];
    for (int i = 0; i < 3; i++) {
        snprintf(hp, sizeof hp, "127.0.0.1:%d", 100 + i);
        idx[i] = khr_ep_add("gw-p", hp);
        ck_assert_int_ge(idx[i], 0);
    }
    unsigned rr = 0;
    /* round robin over the three */
    ck_assert_int_eq(khr_ep_pick(idx, 3, &rr, 0, false), 0);
    ck_assert_int_eq(khr_ep_pick(idx, 3, &rr, 0, false), 1);
    ck_assert_int_eq(khr_ep_pick(idx, 3, &rr, 0, false), 2);
    ck_assert_int_eq(khr_ep_pick(idx, 3, &rr, 0, false), 0);
    /* node 1 (position 1) fails: skipped */
    khr_ep_failed(idx[1], "test");
    ck_assert(!khr_ep_up(idx[1]));
    for (int k = 0; k < 6; k++)
        ck_assert_int_ne(khr_ep_pick(idx, 3, &rr, 0, false), 1);
    /* failover: 0 tried, 1 down: 2 next; then only the down one is left */
    ck_assert_int_eq(khr_ep_pick(idx, 3, &rr, 1u << 0, false), 2);
    ck_assert_int_eq(khr_ep_pick(idx, 3, &rr, (1u << 0) | (1u << 2), false), 1);
    /* ... but not after a 503 (up_only) */
    ck_assert_int_eq(khr_ep_pick(idx, 3, &rr, (1u << 0) | (1u << 2), true), -1);
    /* all tried: none */
    ck_assert_int_eq(khr_ep_pick(idx, 3, &rr, 7u, false), -1);
    /* every one down: still tried, each once */
    khr_ep_failed(idx[0], "test");
    khr_ep_failed(idx[2], "test");
    int p0 = khr_ep_pick(idx, 3, &rr, 0, false);
    ck_assert_int_ge(p0, 0);
    int p1 = khr_ep_pick(idx, 3, &rr, 1u << p0, false);
    ck_assert_int_ge(p1, 0);
    ck_assert_int_ne(p1, p0);
    ck_assert_int_eq(khr_ep_pick(idx, 3, &rr, 0, true), -1);
    /* bad lists */
    ck_assert_int_eq(khr_ep_pick(idx, 0, &rr, 0, false), -1);
    ck_assert_int_eq(khr_ep_pick(idx, KHR_MAX_ORG_EP + 1, &rr, 0, false), -1);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("khrouter_ep");
    TCase *tc = tcase_create("all");
    tcase_add_test(tc, table);
    tcase_add_test(tc, pick);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_set_fork_status(sr, CK_NOFORK); /* the table is the process's own */
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
