package org.sluice.bench.kstreams;

import java.io.BufferedReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.Repartitioned;
import org.apache.kafka.streams.kstream.Suppressed;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.kstream.Windowed;
import org.apache.kafka.streams.state.Stores;

/** The Yahoo Streaming Benchmark from Kafka as a Kafka Streams topology,
 *  as the Flink peer's Ysb does it: parse each JSON ad event (one per
 *  message, as the benchmark's producer writes them), keep the views,
 *  project (ad_id, event_time), join ad_id -> campaign_id (an in-memory map
 *  loaded from campaigns.csv, as sluice's lookup table), repartition by
 *  campaign and count per campaign per 10 s event-time tumbling window,
 *  windows closing 1 s of event time behind each input partition; final
 *  results only; exactly-once v2, commit every 10 s.
 *
 *  usage: Ysb --bootstrap B --topic T --campaigns CSV --out FILE
 *             [--parallelism 2] [--records N] [--commit-ms 10000] [--skew-ms 600000]
 *  writes rows "window_start,window_end,campaign_id,views". */
public final class Ysb {
    private Ysb() {}

    static final long WINDOW_MS = 10_000;
    static final long DELAY_MS = 1_000;

    static Map<String, String> loadCampaigns(String path) throws Exception {
        Map<String, String> m = new HashMap<>();
        try (BufferedReader r = Files.newBufferedReader(Paths.get(path), StandardCharsets.UTF_8)) {
            String line = r.readLine(); // header
            while ((line = r.readLine()) != null) {
                int c = line.indexOf(',');
                if (c > 0) m.put(line.substring(0, c), line.substring(c + 1));
            }
        }
        return m;
    }

    /** JSON -> filter view -> project -> join: emits (campaign_id ; 1) at event_time. */
    static final class ParseFilterJoin extends Bounded.Source {
        private final ObjectMapper mapper = new ObjectMapper();
        private final Map<String, String> campaigns;

        ParseFilterJoin(Map<String, String> campaigns) {
            super(WINDOW_MS, DELAY_MS);
            this.campaigns = campaigns;
        }

        @Override
        void handle(String message) {
            JsonNode e;
            try {
                e = mapper.readTree(message);
            } catch (JsonProcessingException x) {
                return; // bad input
            }
            if (!"view".equals(e.path("event_type").asText())) return;
            String campaign = campaigns.get(e.path("ad_id").asText());
            if (campaign == null) return;
            emit(campaign, 1L, Long.parseLong(e.path("event_time").asText()));
        }
    }

    static Topology topology(Map<String, String> campaigns, Map<String, String> a, String outTopic) {
        long skew = Peer.skewMs(a);
        StreamsBuilder b = new StreamsBuilder();
        b.stream(Peer.need(a, "topic"), Consumed.with(Serdes.ByteArray(), Serdes.String()))
                .process(() -> new ParseFilterJoin(campaigns))
                .repartition(Repartitioned.<String, Long>with(Serdes.String(), Serdes.Long())
                        .withName("campaigns").withNumberOfPartitions(Peer.parallelism(a))
                        .withStreamPartitioner(new Bounded.Partitioner()))
                .processValues(() -> new Bounded.Gate(WINDOW_MS, skew))
                .groupByKey(Grouped.with(Serdes.String(), Serdes.Long()))
                .windowedBy(TimeWindows.ofSizeAndGrace(Duration.ofMillis(WINDOW_MS), Duration.ofMillis(skew)))
                .count(Materialized.<String, Long>as(Stores.inMemoryWindowStore("views",
                                Duration.ofMillis(WINDOW_MS + skew), Duration.ofMillis(WINDOW_MS), false))
                        .withKeySerde(Serdes.String()).withValueSerde(Serdes.Long()))
                .suppress(Suppressed.untilWindowCloses(Suppressed.BufferConfig.unbounded()).withName("final"))
                .toStream()
                .process(() -> new Bounded.Sink<Long>() {
                    @Override
                    String row(Windowed<String> w, Long n) {
                        return w.window().start() + "," + w.window().end() + "," + w.key() + "," + n;
                    }
                })
                .to(outTopic, Produced.with(Serdes.String(), Serdes.String()));
        return b.build();
    }

    public static void main(String[] argv) throws Exception {
        Map<String, String> a = Peer.args(argv);
        long t0 = System.nanoTime();
        Map<String, String> campaigns = loadCampaigns(Peer.need(a, "campaigns"));
        double load = (System.nanoTime() - t0) / 1e9;
        Peer.run("ysb", a, out -> topology(campaigns, a, out), load);
    }
}
