package org.sluice.bench.kstreams;

import java.io.BufferedWriter;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.function.Function;
import java.util.stream.Stream;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;

/** Shared plumbing of the Kafka Streams peer: command-line options, the
 *  bounded run (end offsets of the input topic found before the topology
 *  starts, see {@link Bounded}), the Kafka Streams configuration
 *  (exactly_once_v2, commit interval, one stream thread per unit of
 *  parallelism) and reading the result topic back with read_committed into
 *  a CSV file, which the harness sorts and compares with sluice's rows.
 *
 *  The summary line the harness reads: "kstreams: done: N records in S s",
 *  where S runs from the moment the application is RUNNING (tasks
 *  assigned after the group's first rebalance; JVM start, table loading
 *  and the rebalance before it are left out, as Flink's net runtime and
 *  sluice's own figure leave out their start) to the moment the last
 *  result row was read committed from the result topic. */
final class Peer {
    private Peer() {}

    static Map<String, String> args(String[] argv) {
        Map<String, String> m = new HashMap<>();
        for (int i = 0; i < argv.length; i += 2) {
            if (!argv[i].startsWith("--") || i + 1 >= argv.length)
                throw new IllegalArgumentException("bad option " + argv[i] + " (options are --name value)");
            m.put(argv[i].substring(2), argv[i + 1]);
        }
        return m;
    }

    static String need(Map<String, String> a, String key) {
        String v = a.get(key);
        if (v == null) throw new IllegalArgumentException("missing --" + key);
        return v;
    }

    static int parallelism(Map<String, String> a) {
        return Integer.parseInt(a.getOrDefault("parallelism", "2"));
    }

    /** Skew allowance: the grace of the downstream windows (see Bounded). */
    static long skewMs(Map<String, String> a) {
        return Long.parseLong(a.getOrDefault("skew-ms", "600000"));
    }

    /** Runs topology (built from the output topic's name) over --topic to
     *  the end offsets found now; writes the result rows to --out. */
    static void run(String name, Map<String, String> a, Function<String, Topology> build,
                    double loadSeconds) throws Exception {
        if (System.getProperty("org.slf4j.simpleLogger.defaultLogLevel") == null)
            System.setProperty("org.slf4j.simpleLogger.defaultLogLevel", "warn");
        // new internal topics are "unknown" to a consumer until created: not worth a warning
        System.setProperty("org.slf4j.simpleLogger.log.org.apache.kafka.clients.NetworkClient", "error");
        String bootstrap = need(a, "bootstrap");
        String topic = need(a, "topic");
        int p = parallelism(a);
        long tag = System.currentTimeMillis();
        String app = "sluice-kstreams-" + name + "-" + tag;
        String outTopic = a.getOrDefault("out-topic", app + "-out");
        Properties base = new Properties();
        base.put("bootstrap.servers", bootstrap);

        Map<Integer, Long> ends = new HashMap<>();
        try (Admin admin = Admin.create(base)) {
            TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic);
            List<TopicPartition> parts = new ArrayList<>();
            for (TopicPartitionInfo i : d.partitions()) parts.add(new TopicPartition(topic, i.partition()));
            try (KafkaConsumer<byte[], byte[]> c = consumer(base, ByteArrayDeserializer.class)) {
                c.endOffsets(parts).forEach((tp, off) -> ends.put(tp.partition(), off));
            }
            // one partition: the rows and the end markers of both tasks in the order they were committed
            admin.createTopics(List.of(new NewTopic(outTopic, 1, (short) 1))).all().get();
        }
        Bounded.ends = Map.copyOf(ends);
        if (Bounded.inputsWithData() == 0) throw new IllegalStateException("topic " + topic + " is empty");

        Path state = Files.createTempDirectory("sluice-kstreams-");
        Properties props = new Properties();
        props.putAll(base);
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, app);
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, a.getOrDefault("commit-ms", "10000"));
        props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, Integer.toString(p));
        props.put(StreamsConfig.STATE_DIR_CONFIG, state.toString());
        props.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
        // Kafka Streams' exactly-once default is 10 s, no more than one commit interval here:
        // a commit delayed on a loaded machine would abort the transaction. 60 s is sluice's.
        props.put(StreamsConfig.producerPrefix(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG), 60_000);
        Topology topology = build.apply(outTopic);

        KafkaStreams streams = new KafkaStreams(topology, props);
        long[] runningAt = {0};
        Throwable[] failure = {null};
        streams.setStateListener((now, old) -> {
            if (now == KafkaStreams.State.RUNNING && runningAt[0] == 0) runningAt[0] = System.nanoTime();
        });
        streams.setUncaughtExceptionHandler(e -> {
            failure[0] = e;
            return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        long timeoutMs = Long.parseLong(a.getOrDefault("timeout-s", "3600")) * 1000;
        long t0 = System.nanoTime();
        streams.start();
        long rows = 0;
        int done = 0;
        Path out = Paths.get(need(a, "out"));
        try (KafkaConsumer<String, String> c = consumer(base, StringDeserializer.class);
             BufferedWriter w = Files.newBufferedWriter(out, StandardCharsets.UTF_8)) {
            TopicPartition tp = new TopicPartition(outTopic, 0);
            c.assign(List.of(tp));
            c.seekToBeginning(List.of(tp));
            while (done < p) {
                if (failure[0] != null) throw new IllegalStateException("kafka streams failed", failure[0]);
                KafkaStreams.State s = streams.state();
                if (s == KafkaStreams.State.ERROR || s == KafkaStreams.State.NOT_RUNNING)
                    throw new IllegalStateException("kafka streams is " + s);
                if ((System.nanoTime() - t0) / 1_000_000 > timeoutMs)
                    throw new IllegalStateException("no end after " + timeoutMs / 1000 + " s: " + done
                            + " of " + p + " tasks done, " + rows + " rows");
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(100))) {
                    if ("DONE".equals(r.value())) {
                        done++;
                    } else {
                        w.write(r.value());
                        w.write('\n');
                        rows++;
                    }
                }
            }
        } finally {
            long t1 = System.nanoTime();
            double dropped = metric(streams, "dropped-records-total");
            streams.close(Duration.ofSeconds(60));
            streams.cleanUp();
            deleteTree(state);
            if (done == p) {
                double net = (t1 - (runningAt[0] != 0 ? runningAt[0] : t0)) / 1e9;
                long records = Long.parseLong(a.getOrDefault("records", "0"));
                System.err.printf("kstreams: done: %d records in %.2f s (%.3f M events/s), %d rows written,"
                        + " wall %.2f s from start (rebalance %.2f s), %d late records dropped upstream,"
                        + " %.0f dropped by Kafka Streams, tables loaded in %.2f s%n",
                        records, net, records / net / 1e6, rows, (t1 - t0) / 1e9,
                        ((runningAt[0] != 0 ? runningAt[0] : t0) - t0) / 1e9, Bounded.late.get(), dropped,
                        loadSeconds);
            }
        }
    }

    static <T> KafkaConsumer<T, T> consumer(Properties base, Class<?> deserializer) {
        Properties c = new Properties();
        c.putAll(base);
        c.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        c.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        c.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, deserializer.getName());
        c.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, deserializer.getName());
        return new KafkaConsumer<>(c);
    }

    /** Sum of a Kafka Streams metric over its tags (threads, tasks). */
    static double metric(KafkaStreams s, String name) {
        double sum = 0;
        for (var e : s.metrics().entrySet()) {
            if (e.getKey().name().equals(name) && e.getValue().metricValue() instanceof Number n)
                sum += n.doubleValue();
        }
        return sum;
    }

    static void deleteTree(Path p) throws IOException {
        if (!Files.exists(p)) return;
        try (Stream<Path> s = Files.walk(p)) {
            for (Path q : s.sorted(Comparator.reverseOrder()).toList()) Files.deleteIfExists(q);
        }
    }

}
