/* replay_copy: the copy loop of `mlops replay` (shared/cli/replay.py), in C on librdkafka.
 *
 * A Python loop spends 7-14 us per copied message in confluent-kafka's per-message calls;
 * here the same consume -> produce costs well under a microsecond of our own code. Planning,
 * the checkpoint file, the lock and resuming stay in Python (shared/cli/native_copy.py
 * drives this program); this program only copies and reports what Kafka confirmed.
 *
 * usage: replay_copy SOURCE TARGET BATCH CHECKPOINT_EVERY LIMIT P:NEXT:END:SKIP:TARGET_END...
 *   NEXT is the first source offset to read, END the first one not copied, SKIP how many
 *   messages from NEXT are read but not written (confirmed on the target after the last
 *   checkpoint), TARGET_END the target partition's end offset now. LIMIT 0 means no limit.
 * stdin: the librdkafka configuration as NUL-terminated strings, key then value, keys
 *   prefixed `consumer.` or `producer.` (stdin, not argv, so credentials stay out of ps).
 * stdout, one line each, flushed:
 *   progress N                     N messages written since the previous progress line
 *   saved N P:NEXT:TARGET_END ...  N more writes confirmed since the previous saved line;
 *                                  per partition, every source message before NEXT is
 *                                  confirmed on the target (or skipped), which ends at
 *                                  TARGET_END. Printed every CHECKPOINT_EVERY confirmed writes
 *                                  and, after a flush, at the end.
 * exit: 0 done or LIMIT reached, 3 stopped by SIGINT/SIGTERM after a final saved line,
 *   1 a Kafka error (stderr says which; nothing after the last saved line is confirmed),
 *   2 bad arguments or configuration.
 *
 * Confirmation comes from delivery reports: the idempotent producer delivers a partition's
 * messages in order, so a report for source offset O means every write before it is
 * confirmed too. Checkpoints therefore never stop the copy to flush.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#include <librdkafka/rdkafka.h>

enum { EXIT_DONE = 0, EXIT_FAILED = 1, EXIT_USAGE = 2, EXIT_STOPPED = 3 };

#define CONSUME_TIMEOUT_MS 500
#define FLUSH_TIMEOUT_MS 60000

typedef struct {
        int32_t partition;
        int64_t next; /* next source offset to read */
        int64_t end;  /* exclusive */
        int64_t skip;
        int64_t target_end;     /* after the last confirmed write */
        int64_t outstanding;    /* writes not confirmed yet */
        int64_t confirmed_next; /* source offset after the last confirmed write */
} Range;

typedef struct {
        rd_kafka_t *producer;
        rd_kafka_topic_t *target;
        const char *target_name;
        Range *ranges;
        int count;
        Range **by_partition; /* indexed by partition number, NULL if not ours */
        int32_t max_partition;
        int64_t copied;    /* writes queued */
        int64_t confirmed; /* writes confirmed */
        int64_t recorded;  /* confirmed as of the last saved line */
        int64_t limit;     /* 0: none */
        long failures;
        char first_failure[512];
} Copy;

static volatile sig_atomic_t stop_requested;

static void on_signal(int signum) {
        (void)signum;
        stop_requested = 1;
}

/* Called on this thread from rd_kafka_poll/flush; the message opaque is its source offset. */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *message, void *opaque) {
        (void)rk;
        Copy *copy = opaque;
        if (message->err) {
                if (copy->failures++ == 0)
                        snprintf(copy->first_failure, sizeof copy->first_failure,
                                 "%s[%" PRId32 "]: %s", rd_kafka_topic_name(message->rkt),
                                 message->partition, rd_kafka_err2str(message->err));
                return;
        }
        Range *range = copy->by_partition[message->partition];
        range->outstanding--;
        range->confirmed_next = (int64_t)(intptr_t)message->_private + 1;
        range->target_end = message->offset + 1;
        copy->confirmed++;
}

static int configure(rd_kafka_conf_t *consumer, rd_kafka_conf_t *producer) {
        char *key = NULL, *value = NULL, error[512];
        size_t key_size = 0, value_size = 0;
        int failed = 0;
        while (!failed && getdelim(&key, &key_size, '\0', stdin) > 0) {
                if (getdelim(&value, &value_size, '\0', stdin) <= 0) {
                        fprintf(stderr, "replay_copy: configuration key %s has no value\n", key);
                        failed = 1;
                        break;
                }
                rd_kafka_conf_t *conf = NULL;
                const char *name = key;
                if (strncmp(key, "consumer.", 9) == 0)
                        conf = consumer, name = key + 9;
                else if (strncmp(key, "producer.", 9) == 0)
                        conf = producer, name = key + 9;
                if (conf == NULL) {
                        fprintf(stderr, "replay_copy: configuration key %s is not consumer.* or "
                                        "producer.*\n", key);
                        failed = 1;
                } else if (rd_kafka_conf_set(conf, name, value, error, sizeof error) !=
                           RD_KAFKA_CONF_OK) {
                        fprintf(stderr, "replay_copy: %s\n", error);
                        failed = 1;
                }
        }
        free(key);
        free(value);
        return failed ? -1 : 0;
}

static int parse_range(const char *text, Range *range) {
        int used = 0;
        int parsed = sscanf(text, "%" SCNd32 ":%" SCNd64 ":%" SCNd64 ":%" SCNd64 ":%" SCNd64 "%n",
                            &range->partition, &range->next, &range->end, &range->skip,
                            &range->target_end, &used);
        if (parsed != 5 || text[used] != '\0' || range->partition < 0 || range->next < 0 ||
            range->skip < 0 || range->target_end < 0)
                return -1;
        return 0;
}

static int is_open(const Range *range) {
        return range->next < range->end;
}

static int any_open(const Copy *copy) {
        for (int i = 0; i < copy->count; i++)
                if (is_open(&copy->ranges[i]))
                        return 1;
        return 0;
}

static int limit_reached(const Copy *copy) {
        return copy->limit > 0 && copy->copied >= copy->limit;
}

static int produce(Copy *copy, Range *range, rd_kafka_message_t *message) {
        rd_kafka_headers_t *headers = NULL;
        rd_kafka_resp_err_t header_error = rd_kafka_message_detach_headers(message, &headers);
        if (header_error && header_error != RD_KAFKA_RESP_ERR__NOENT) {
                fprintf(stderr, "headers of %s[%" PRId32 "]@%" PRId64 " unreadable: %s\n",
                        rd_kafka_topic_name(message->rkt), message->partition, message->offset,
                        rd_kafka_err2str(header_error));
                return -1;
        }
        rd_kafka_timestamp_type_t type;
        int64_t timestamp = rd_kafka_message_timestamp(message, &type);
        rd_kafka_vu_t fields[8] = {
            {.vtype = RD_KAFKA_VTYPE_OPAQUE, .u.ptr = (void *)(intptr_t)message->offset},
            {.vtype = RD_KAFKA_VTYPE_RKT, .u.rkt = copy->target},
            {.vtype = RD_KAFKA_VTYPE_PARTITION, .u.i32 = message->partition},
            {.vtype = RD_KAFKA_VTYPE_MSGFLAGS, .u.i = RD_KAFKA_MSG_F_COPY},
            {.vtype = RD_KAFKA_VTYPE_VALUE, .u.mem = {message->payload, message->len}},
            {.vtype = RD_KAFKA_VTYPE_KEY, .u.mem = {message->key, message->key_len}},
            /* 0 is "now": a message without a timestamp gets one, as in the Python path. */
            {.vtype = RD_KAFKA_VTYPE_TIMESTAMP, .u.i64 = timestamp > 0 ? timestamp : 0},
            {.vtype = RD_KAFKA_VTYPE_HEADERS, .u.headers = headers},
        };
        size_t count = headers ? 8 : 7;
        for (;;) {
                rd_kafka_error_t *error = rd_kafka_produceva(copy->producer, fields, count);
                if (error == NULL) {
                        /* The headers now belong to the queued message. */
                        if (range->outstanding++ == 0)
                                range->confirmed_next = range->next;
                        return 0;
                }
                rd_kafka_resp_err_t code = rd_kafka_error_code(error);
                if (code != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                        fprintf(stderr, "writing to %s[%" PRId32 "] failed: %s\n",
                                copy->target_name, message->partition,
                                rd_kafka_error_string(error));
                        rd_kafka_error_destroy(error);
                        if (headers)
                                rd_kafka_headers_destroy(headers);
                        return -1;
                }
                rd_kafka_error_destroy(error);
                rd_kafka_poll(copy->producer, 50); /* make room: serve delivery reports */
        }
}

/* One consumed message (or event): copies it if it is in its partition's range. */
static int handle(Copy *copy, rd_kafka_message_t *message) {
        int32_t p = message->partition;
        Range *range = p >= 0 && p <= copy->max_partition ? copy->by_partition[p] : NULL;
        if (message->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                /* Compaction can leave the last offsets of a range empty: the end is reached. */
                if (range && is_open(range) && message->offset >= range->end)
                        range->next = range->end;
                return 0;
        }
        if (message->err) {
                fprintf(stderr, "reading %s[%" PRId32 "] failed: %s\n",
                        message->rkt ? rd_kafka_topic_name(message->rkt) : "?", p,
                        rd_kafka_message_errstr(message));
                return -1;
        }
        if (range == NULL || !is_open(range) || message->offset < range->next)
                return 0;
        if (message->offset >= range->end) {
                range->next = range->end; /* a compaction gap ran past the end */
                return 0;
        }
        if (range->skip > 0) {
                range->skip--;
        } else {
                if (produce(copy, range, message))
                        return -1;
                copy->copied++;
        }
        /* Advanced once the write is queued: an interruption in between leaves a write the
         * resume finds on the target and skips, never a gap. */
        range->next = message->offset + 1;
        return 0;
}

static int copy_batch(Copy *copy, rd_kafka_queue_t *queue, rd_kafka_message_t **batch,
                      int64_t batch_size) {
        /* Asking for no more than what is left lets the last batch return as soon as it is
         * there, instead of waiting out the timeout for messages the range does not have. */
        int64_t left = 0;
        for (int i = 0; i < copy->count; i++)
                if (is_open(&copy->ranges[i]))
                        left += copy->ranges[i].end - copy->ranges[i].next + copy->ranges[i].skip;
        int64_t wanted = left < batch_size ? left : batch_size;
        if (copy->limit > 0 && copy->limit - copy->copied < wanted)
                wanted = copy->limit - copy->copied;
        if (wanted < 1)
                wanted = 1;
        ssize_t received = rd_kafka_consume_batch_queue(queue, CONSUME_TIMEOUT_MS, batch,
                                                        (size_t)wanted);
        if (received < 0) {
                fprintf(stderr, "reading failed: %s\n", rd_kafka_err2str(rd_kafka_last_error()));
                return -1;
        }
        int64_t before = copy->copied;
        int failed = 0;
        for (ssize_t i = 0; i < received; i++) {
                if (!failed && !limit_reached(copy))
                        failed = handle(copy, batch[i]);
                rd_kafka_message_destroy(batch[i]);
        }
        if (failed)
                return -1;
        rd_kafka_poll(copy->producer, 0);
        if (copy->copied > before) {
                printf("progress %" PRId64 "\n", copy->copied - before);
                fflush(stdout);
        }
        return 0;
}

/* A saved line with how far each partition is confirmed; refused after any failed write. */
static int report(Copy *copy) {
        char error[512];
        if (rd_kafka_fatal_error(copy->producer, error, sizeof error)) {
                fprintf(stderr, "the producer failed: %s\n", error);
                return -1;
        }
        if (copy->failures) {
                fprintf(stderr, "Kafka did not confirm every write (%ld failed, first: %s)\n",
                        copy->failures, copy->first_failure);
                return -1;
        }
        printf("saved %" PRId64, copy->confirmed - copy->recorded);
        for (int i = 0; i < copy->count; i++) {
                const Range *range = &copy->ranges[i];
                /* Nothing outstanding: skipped messages and gaps after the last write count. */
                int64_t next = range->outstanding ? range->confirmed_next : range->next;
                printf(" %" PRId32 ":%" PRId64 ":%" PRId64, range->partition, next,
                       range->target_end);
        }
        printf("\n");
        fflush(stdout);
        copy->recorded = copy->confirmed;
        return 0;
}

/* Wait for every write, then report. */
static int finish(Copy *copy) {
        if (rd_kafka_flush(copy->producer, FLUSH_TIMEOUT_MS) && !copy->failures) {
                fprintf(stderr, "Kafka did not confirm every write (%d unconfirmed after %d s)\n",
                        rd_kafka_outq_len(copy->producer), FLUSH_TIMEOUT_MS / 1000);
                return -1;
        }
        return report(copy);
}

static int parse_arguments(int argc, char **argv, Copy *copy, int64_t *batch_size,
                           int64_t *checkpoint_every) {
        if (argc < 7) {
                fprintf(stderr, "usage: replay_copy SOURCE TARGET BATCH CHECKPOINT_EVERY LIMIT "
                                "PARTITION:NEXT:END:SKIP...\n");
                return -1;
        }
        copy->target_name = argv[2];
        copy->count = argc - 6;
        char *end;
        *batch_size = strtoll(argv[3], &end, 10);
        *checkpoint_every = *end ? -1 : strtoll(argv[4], &end, 10);
        copy->limit = *end ? -1 : strtoll(argv[5], &end, 10);
        if (*end || *batch_size < 1 || *checkpoint_every < 1 || copy->limit < 0) {
                fprintf(stderr, "replay_copy: BATCH and CHECKPOINT_EVERY must be >= 1, "
                                "LIMIT >= 0\n");
                return -1;
        }
        copy->ranges = calloc((size_t)copy->count, sizeof *copy->ranges);
        for (int i = 0; i < copy->count; i++) {
                if (parse_range(argv[6 + i], &copy->ranges[i])) {
                        fprintf(stderr, "replay_copy: %s is not PARTITION:NEXT:END:SKIP\n",
                                argv[6 + i]);
                        return -1;
                }
                if (copy->ranges[i].partition > copy->max_partition)
                        copy->max_partition = copy->ranges[i].partition;
        }
        copy->by_partition =
            calloc((size_t)copy->max_partition + 1, sizeof *copy->by_partition);
        for (int i = 0; i < copy->count; i++) {
                if (copy->by_partition[copy->ranges[i].partition]) {
                        fprintf(stderr, "replay_copy: partition %" PRId32 " given twice\n",
                                copy->ranges[i].partition);
                        return -1;
                }
                copy->by_partition[copy->ranges[i].partition] = &copy->ranges[i];
        }
        return 0;
}

/* The producer into copy->producer and a consumer of `source` assigned at each open range's
 * next offset; NULL (and a message on stderr) if either cannot be made. */
static rd_kafka_t *open_clients(Copy *copy, const char *source) {
        rd_kafka_conf_t *consumer_conf = rd_kafka_conf_new(), *producer_conf = rd_kafka_conf_new();
        if (configure(consumer_conf, producer_conf))
                return NULL;
        char error[512];
        /* Every write's report is needed: it is what confirms the checkpoint. */
        if (rd_kafka_conf_set(producer_conf, "delivery.report.only.error", "false", error,
                              sizeof error) != RD_KAFKA_CONF_OK) {
                fprintf(stderr, "replay_copy: %s\n", error);
                return NULL;
        }
        rd_kafka_conf_set_dr_msg_cb(producer_conf, on_delivery);
        rd_kafka_conf_set_opaque(producer_conf, copy);
        copy->producer = rd_kafka_new(RD_KAFKA_PRODUCER, producer_conf, error, sizeof error);
        rd_kafka_t *consumer =
            copy->producer ? rd_kafka_new(RD_KAFKA_CONSUMER, consumer_conf, error, sizeof error)
                           : NULL;
        if (consumer == NULL) {
                fprintf(stderr, "replay_copy: %s\n", error);
                return NULL;
        }
        copy->target = rd_kafka_topic_new(copy->producer, copy->target_name, NULL);
        rd_kafka_poll_set_consumer(consumer);
        rd_kafka_topic_partition_list_t *assignment =
            rd_kafka_topic_partition_list_new(copy->count);
        for (int i = 0; i < copy->count; i++)
                if (is_open(&copy->ranges[i]))
                        rd_kafka_topic_partition_list_add(assignment, source,
                                                          copy->ranges[i].partition)
                            ->offset = copy->ranges[i].next;
        rd_kafka_resp_err_t assigned = rd_kafka_assign(consumer, assignment);
        rd_kafka_topic_partition_list_destroy(assignment);
        if (assigned) {
                fprintf(stderr, "assigning %s failed: %s\n", source, rd_kafka_err2str(assigned));
                return NULL;
        }
        return consumer;
}

static int copy_all(Copy *copy, rd_kafka_t *consumer, int64_t batch_size,
                    int64_t checkpoint_every) {
        rd_kafka_queue_t *queue = rd_kafka_queue_get_consumer(consumer);
        rd_kafka_message_t **batch = calloc((size_t)batch_size, sizeof *batch);
        while (any_open(copy) && !limit_reached(copy)) {
                if (stop_requested)
                        return finish(copy) ? EXIT_FAILED : EXIT_STOPPED;
                if (copy_batch(copy, queue, batch, batch_size))
                        return EXIT_FAILED;
                if (copy->confirmed - copy->recorded >= checkpoint_every && report(copy))
                        return EXIT_FAILED;
        }
        return finish(copy) ? EXIT_FAILED : EXIT_DONE;
}

/* Every message passes through freshly allocated memory (fetch buffers, consumed and queued
 * messages). glibc would hand freed memory back to the kernel (trim, munmap of large blocks)
 * and fault it in again zeroed, which cost more CPU than the copy itself: keep it instead. */
static void keep_freed_memory(void) {
        mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
        mallopt(M_TRIM_THRESHOLD, 1024 * 1024 * 1024);
        mallopt(M_TOP_PAD, 64 * 1024 * 1024);
}

int main(int argc, char **argv) {
        keep_freed_memory();
        /* A copier never outlives the replay that reads its progress. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        struct sigaction action = {.sa_handler = on_signal};
        sigemptyset(&action.sa_mask);
        sigaction(SIGINT, &action, NULL);
        sigaction(SIGTERM, &action, NULL);

        Copy copy = {0};
        int64_t batch_size, checkpoint_every;
        if (parse_arguments(argc, argv, &copy, &batch_size, &checkpoint_every))
                return EXIT_USAGE;
        rd_kafka_t *consumer = open_clients(&copy, argv[1]);
        if (consumer == NULL)
                return EXIT_USAGE;
        /* The clients are not torn down: every write is confirmed by finish() and nothing is
         * committed, so there is nothing left to wait for. */
        return copy_all(&copy, consumer, batch_size, checkpoint_every);
}
