package org.sluice.bench.kstreams;

import java.nio.charset.StandardCharsets;
import java.util.HashSet;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.kafka.common.utils.Utils;
import org.apache.kafka.streams.kstream.Windowed;
import org.apache.kafka.streams.processor.StreamPartitioner;
import org.apache.kafka.streams.processor.api.FixedKeyProcessor;
import org.apache.kafka.streams.processor.api.FixedKeyProcessorContext;
import org.apache.kafka.streams.processor.api.FixedKeyRecord;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.processor.api.RecordMetadata;

/** What the peer adds to Kafka Streams so that a bounded input gives the
 *  same final rows as sluice's bounded run (bounded = 'true': read to the
 *  end offsets found at start, then a final watermark of +infinity fires
 *  every window) and as Flink's, whose watermarks are per partition.
 *
 *  Kafka Streams has neither watermarks nor an end of input: a windowed
 *  aggregation's time is the largest timestamp the task has seen, which
 *  after a repartition topic mixes every upstream partition, and a window
 *  whose results are suppressed until it closes never closes once the
 *  input stops. So:
 *
 *  1. Lateness is decided upstream, per input partition, as sluice and
 *     Flink decide it: {@link Source#emit} drops a record whose window end
 *     is at or before the partition's watermark (largest event time seen in
 *     that partition minus the bounded out-of-orderness). Downstream, the
 *     windows' grace is only a skew allowance (how far one upstream task
 *     may run ahead of the other in event time, --skew-ms) and drops
 *     nothing in a run where the upstream tasks stay within it (the peer
 *     prints the records Kafka Streams itself dropped; the harness compares
 *     the rows).
 *  2. End of input: the task of each input partition, having processed the
 *     record at the partition's end offset (found by {@link Peer} before
 *     the topology starts), sends an end marker (key {@link #EOF}) to every
 *     partition of the repartition topic ({@link Partitioner}, KIP-837
 *     multicast). Each downstream task's {@link Gate}, once it has the
 *     markers of every input partition (the upstream task asks for a
 *     commit after its marker, so that it is readable at once; all data of the input is then
 *     before them), sends two records through the windowed aggregation, later
 *     than any event by more than a window and its grace: the first closes
 *     every real window, the second closes the first one's window, whose emission after suppression tells
 *     {@link Sink} that the task is done. The gate asks for a commit, so the
 *     final rows are committed at once rather than at the next commit
 *     interval. The input must have been produced without transactions
 *     (sluice gen's idempotent producer, kcat), so that the record at the
 *     end offset minus one is data, not a transaction marker; otherwise
 *     the run waits until Peer's --timeout-s and fails. (Not far in the future: since Kafka 4.0 brokers refuse
 *     records more than an hour ahead of their clock,
 *     log.message.timestamp.after.max.ms, and these reach changelogs.) */
final class Bounded {
    private Bounded() {}

    static final String EOF = "\u0000end-of-input";
    /** input partition -> end offset when the run started (set by Peer). */
    static volatile Map<Integer, Long> ends = Map.of();
    /** records dropped upstream as late (their window closed by the partition's watermark). */
    static final AtomicLong late = new AtomicLong();

    static int inputsWithData() {
        int n = 0;
        for (long e : ends.values()) if (e > 0) n++;
        return n;
    }

    /** The task of one input partition: decodes messages (subclasses) and
     *  emits (group key, value) records at their event time. */
    abstract static class Source implements Processor<byte[], String, String, Long> {
        private final long windowMs;
        private final long delayMs;
        private ProcessorContext<String, Long> ctx;
        private long maxTs = Long.MIN_VALUE;

        Source(long windowMs, long delayMs) {
            this.windowMs = windowMs;
            this.delayMs = delayMs;
        }

        @Override
        public void init(ProcessorContext<String, Long> context) {
            ctx = context;
        }

        @Override
        public void process(Record<byte[], String> r) {
            if (r.value() != null) handle(r.value());
            RecordMetadata m = ctx.recordMetadata().orElseThrow();
            Long end = ends.get(m.partition());
            if (end != null && m.offset() + 1 == end) {
                ctx.forward(new Record<>(EOF, (long) m.partition(), Math.max(maxTs, 0)));
                ctx.commit(); // the end of the input: commit now, not at the next interval
            }
        }

        /** Decodes one message (one or more events). */
        abstract void handle(String message);

        /** Forwards (key, value) at event time ts unless its window has
         *  already closed by this partition's watermark. */
        final void emit(String key, long value, long ts) {
            if (ts > maxTs) maxTs = ts;
            long end = Math.floorDiv(ts, windowMs) * windowMs + windowMs;
            if (maxTs != Long.MIN_VALUE && end <= maxTs - delayMs) {
                late.incrementAndGet();
                return;
            }
            ctx.forward(new Record<>(key, value, ts));
        }
    }

    /** Hash partitioning as Kafka's default, except that end markers go to
     *  every partition. */
    static final class Partitioner implements StreamPartitioner<String, Long> {
        @Override
        public Optional<Set<Integer>> partitions(String topic, String key, Long value, int n) {
            Set<Integer> s = new HashSet<>();
            if (EOF.equals(key)) {
                for (int i = 0; i < n; i++) s.add(i);
            } else {
                s.add(Utils.toPositive(Utils.murmur2(key.getBytes(StandardCharsets.UTF_8))) % n);
            }
            return Optional.of(s);
        }
    }

    /** Downstream, before the windows: passes data through, holds the end
     *  markers until every input partition's has come. */
    static final class Gate implements FixedKeyProcessor<String, Long, Long> {
        private final Set<Long> seen = new HashSet<>();
        private final int expected = inputsWithData();
        private final long step;
        private long maxTs;
        private FixedKeyProcessorContext<String, Long> ctx;

        /** windowMs and graceMs: those of the windows after the gate. */
        Gate(long windowMs, long graceMs) {
            step = windowMs + graceMs + 1;
        }

        @Override
        public void init(FixedKeyProcessorContext<String, Long> context) {
            ctx = context;
        }

        @Override
        public void process(FixedKeyRecord<String, Long> r) {
            if (!EOF.equals(r.key())) {
                ctx.forward(r);
                return;
            }
            maxTs = Math.max(maxTs, r.timestamp()); // the largest event time of the partition
            if (seen.add(r.value()) && seen.size() == expected) {
                ctx.forward(r.withValue(-1L).withTimestamp(maxTs + step));
                ctx.forward(r.withValue(-1L).withTimestamp(maxTs + 2 * step));
                ctx.commit();
            }
        }
    }

    /** After the suppression: result rows as CSV text (null: withheld),
     *  and "DONE" when the end marker's window comes out. */
    abstract static class Sink<V> implements Processor<Windowed<String>, V, String, String> {
        private ProcessorContext<String, String> ctx;

        @Override
        public void init(ProcessorContext<String, String> context) {
            ctx = context;
        }

        @Override
        public void process(Record<Windowed<String>, V> r) {
            if (EOF.equals(r.key().key())) {
                ctx.forward(new Record<>(null, "DONE", r.timestamp()));
                ctx.commit();
                return;
            }
            String row = row(r.key(), r.value());
            if (row != null) ctx.forward(new Record<>(null, row, r.timestamp()));
        }

        abstract String row(Windowed<String> key, V value);
    }
}
