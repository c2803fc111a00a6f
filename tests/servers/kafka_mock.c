/* SPDX-License-Identifier: MIT */
/*
 * kafka_mock.c: librdkafka's mock Kafka cluster as a server for tests and examples.
 *
 *   kafka_mock [--brokers N] [--topic NAME[:PARTITIONS]]...
 *
 * The brokers listen on ephemeral ports of 127.0.0.1; partition p of every topic is led by
 * broker p % N + 1 (broker ids run from 1 to N). The first line printed is
 * "listening on <bootstrap servers>"; then one line per command read on standard input:
 *
 *   down ID       the broker with that id (1..N) drops its connections and refuses new ones
 *   up ID         it serves again
 *   rtt ID MS     it answers MS milliseconds late
 *   quit          exit (as does the end of standard input)
 *
 * Each command is answered "ok" or "error: ...".
 */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(void)
{
    fprintf(stderr, "usage: kafka_mock [--brokers N] [--topic NAME[:PARTITIONS]]...\n");
    exit(2);
}

static void quiet_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    if (level <= 3) fprintf(stderr, "kafka_mock: %s: %s\n", fac, buf);
}

int main(int argc, char **argv)
{
    int brokers = 3;
    const char *topics[64];
    int ntopics = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--brokers") == 0 && i + 1 < argc) {
            brokers = atoi(argv[++i]);
            if (brokers < 1 || brokers > 16) usage();
        } else if (strcmp(argv[i], "--topic") == 0 && i + 1 < argc && ntopics < 64) {
            topics[ntopics++] = argv[++i];
        } else {
            usage();
        }
    }

    /* the cluster needs a client instance for its threads and logs; it sends nothing */
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, quiet_log);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "kafka_mock: %s\n", err);
        return 1;
    }
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, brokers);
    if (!mc) {
        fprintf(stderr, "kafka_mock: cannot create the mock cluster\n");
        return 1;
    }
    for (int i = 0; i < ntopics; i++) {
        char name[256];
        int partitions = 1;
        snprintf(name, sizeof(name), "%s", topics[i]);
        char *colon = strrchr(name, ':');
        if (colon) {
            *colon = '\0';
            partitions = atoi(colon + 1);
            if (partitions < 1) usage();
        }
        rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(mc, name, partitions, 1);
        /* leaders in a fixed pattern (the mock picks them at random), so that a test knows
         * which partitions a broker taken down leads: partition p is led by broker
         * p % N + 1 */
        for (int p = 0; !e && p < partitions; p++)
            e = rd_kafka_mock_partition_set_leader(mc, name, p, p % brokers + 1);
        if (e) {
            fprintf(stderr, "kafka_mock: topic %s: %s\n", name, rd_kafka_err2str(e));
            return 1;
        }
    }
    printf("listening on %s\n", rd_kafka_mock_cluster_bootstraps(mc));
    fflush(stdout);

    char line[256];
    while (fgets(line, sizeof(line), stdin)) {
        char cmd[32];
        int id = 0, ms = 0;
        int n = sscanf(line, "%31s %d %d", cmd, &id, &ms);
        rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
        if (n >= 1 && strcmp(cmd, "quit") == 0) break;
        if (n == 2 && strcmp(cmd, "down") == 0) {
            e = rd_kafka_mock_broker_set_down(mc, id);
        } else if (n == 2 && strcmp(cmd, "up") == 0) {
            e = rd_kafka_mock_broker_set_up(mc, id);
        } else if (n == 3 && strcmp(cmd, "rtt") == 0) {
            e = rd_kafka_mock_broker_set_rtt(mc, id, ms);
        } else if (n >= 1) {
            printf("error: unknown command\n");
            fflush(stdout);
            continue;
        } else {
            continue;
        }
        if (e)
            printf("error: %s\n", rd_kafka_err2str(e));
        else
            printf("ok\n");
        fflush(stdout);
    }
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return 0;
}
