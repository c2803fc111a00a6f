/* SPDX-License-Identifier: MIT */
/* test_report.c: the CSV files' exact columns and quoting, number formats, and the JSON. */
#include "report/report.h"

#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = '\0';
    fclose(f);
    return s;
}

static void fill(struct cc_agg *a, struct cc_shard *s, struct cc_recorder *r)
{
    cc_shard_init(s);
    cc_recorder_init(r, s);
    const struct cc_ikey *k1 = cc_recorder_key(r, "GET", 3, "/items?page=1", 13);
    const struct cc_ikey *k2 = cc_recorder_key(r, "POST", 4, "/x, \"new\"", 9);
    for (int i = 1; i <= 100; i++)
        cc_recorder_request(r, k1, (uint64_t)i * 1000000, 10, NULL, 0);
    cc_recorder_request(r, k2, 5000000, 0, "HTTP 500: \"oops\", again", 23);
    cc_recorder_exception(r, "bad", 3, "line 1\nline 2", 13);
    cc_agg_init(a, true);
    a->start_s = 1000;
    cc_agg_open_interval(a, 0);
    cc_agg_merge(a, s, 0);
    cc_agg_close_interval(a, 1000000000);
}

static void test_csv_files(void **state)
{
    (void)state;
    struct cc_agg a;
    struct cc_shard s;
    struct cc_recorder r;
    fill(&a, &s, &r);
    char dir[] = "/tmp/cicada-csv-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char prefix[128], path[256];
    snprintf(prefix, sizeof(prefix), "%s/sub/run", dir);
    struct cc_csv c;
    char *err = NULL;
    assert_int_equal(cc_csv_open(&c, prefix, false, &err), 0);
    cc_csv_write(&c, &a, 7, 1234.9, true);
    cc_csv_close(&c);

    snprintf(path, sizeof(path), "%s_stats.csv", prefix);
    char *stats = slurp(path);
    const char *head =
        "Type,Name,Request Count,Failure Count,Median Response Time,Average Response "
        "Time,Min Response Time,Max Response Time,Average Content Size,Requests/s,"
        "Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%\r\n";
    assert_memory_equal(stats, head, strlen(head));
    /* rows sorted by name; a name with a comma and quotes is quoted, quotes doubled */
    char *row1 = stats + strlen(head);
    assert_memory_equal(row1, "GET,/items?page=1,100,0,", 24);
    assert_non_null(strstr(stats, "POST,\"/x, \"\"new\"\"\",1,1,"));
    assert_non_null(strstr(stats, "\r\n,Aggregated,101,1,"));
    free(stats);

    snprintf(path, sizeof(path), "%s_stats_history.csv", prefix);
    char *hist = slurp(path);
    const char *hhead = "Timestamp,User Count,Type,Name,Requests/s,Failures/s,50%,66%,75%,80%,90%,"
                        "95%,98%,99%,99.9%,99.99%,100%,Total Request Count,Total Failure Count,"
                        "Total Median Response Time,Total Average Response Time,Total Min Response "
                        "Time,Total Max Response Time,Total Average Content Size\r\n";
    assert_memory_equal(hist, hhead, strlen(hhead));
    assert_memory_equal(hist + strlen(hhead), "1234,7,,Aggregated,", 19);
    free(hist);

    snprintf(path, sizeof(path), "%s_failures.csv", prefix);
    char *fails = slurp(path);
    assert_memory_equal(fails, "Method,Name,Error,Occurrences,First Seen,Last Seen\r\n", 51);
    assert_non_null(strstr(fails, "POST,\"/x, \"\"new\"\"\",\"HTTP 500: \"\"oops\"\", again\",1,"));
    free(fails);

    snprintf(path, sizeof(path), "%s_exceptions.csv", prefix);
    char *exc = slurp(path);
    assert_string_equal(exc, "Count,Message,Traceback,Nodes\r\n1,bad,\"line 1\nline 2\",local\r\n");
    free(exc);

    cc_agg_release(&a);
    cc_recorder_release(&r);
    cc_shard_release(&s);
}

static void test_number_formats(void **state)
{
    (void)state;
    char b[64];
    cc_fmt_num(b, sizeof(b), 12.5, 3);
    assert_string_equal(b, "12.5");
    cc_fmt_num(b, sizeof(b), 12.0, 3);
    assert_string_equal(b, "12");
    cc_fmt_num(b, sizeof(b), 0.00049, 3);
    assert_string_equal(b, "0");
    cc_fmt_ms(b, sizeof(b), 1234.4);
    assert_string_equal(b, "1234");
    cc_fmt_ms(b, sizeof(b), 12.34);
    assert_string_equal(b, "12.3");
    cc_fmt_ms(b, sizeof(b), 0.456);
    assert_string_equal(b, "0.46");
}

static void test_json(void **state)
{
    (void)state;
    struct cc_agg a;
    struct cc_shard s;
    struct cc_recorder r;
    fill(&a, &s, &r);
    const char *names[] = {"Shopper", "Admin"};
    uint32_t users[] = {3, 1};
    struct cc_run_info info = {
        .start_s = 1000, .end_s = 1010, .nclasses = 2, .class_names = names, .class_users = users};
    char *text = cc_report_json(&a, &info);
    json_error_t jerr;
    json_t *root = json_loads(text, 0, &jerr);
    assert_non_null(root);
    json_t *stats = json_object_get(root, "stats");
    assert_int_equal(json_array_size(stats), 2);
    json_t *first = json_array_get(stats, 0);
    assert_string_equal(json_string_value(json_object_get(first, "type")), "GET");
    assert_int_equal(json_integer_value(json_object_get(first, "num_requests")), 100);
    json_t *pct = json_object_get(first, "percentiles");
    const char *keys[] = {"50", "66", "75", "80", "90", "95", "98", "99", "99.9", "99.99", "100"};
    for (size_t i = 0; i < 11; i++)
        assert_non_null(json_object_get(pct, keys[i]));
    /* 1..100 ms: the median (rank 50) is 51 ms, within the histogram's bound */
    double p50 = json_real_value(json_object_get(pct, "50"));
    assert_true(p50 > 51 * 0.99 && p50 < 51 * 1.01);
    assert_true(json_real_value(json_object_get(pct, "100")) == 100.0);
    json_t *total = json_object_get(root, "total");
    assert_int_equal(json_integer_value(json_object_get(total, "num_failures")), 1);
    json_t *failures = json_object_get(root, "failures");
    assert_string_equal(json_string_value(json_object_get(json_array_get(failures, 0), "error")),
                        "HTTP 500: \"oops\", again");
    json_t *uc = json_object_get(root, "user_count");
    assert_int_equal(json_integer_value(json_object_get(uc, "Shopper")), 3);
    assert_true(json_real_value(json_object_get(root, "end_time")) == 1010.0);
    json_decref(root);
    free(text);
    cc_agg_release(&a);
    cc_recorder_release(&r);
    cc_shard_release(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csv_files),
        cmocka_unit_test(test_number_formats),
        cmocka_unit_test(test_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
