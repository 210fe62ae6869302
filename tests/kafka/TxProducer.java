// TxProducer.java — an independent transactional producer for the tests
// (the Apache Kafka Java client from the broker's jars, run as a single-file
// program: java -cp 'LIBS/*' TxProducer.java BOOTSTRAP TOPIC < script).
// Each stdin line is a command: "begin", "commit", "abort", or
// "send PARTITION VALUE" (VALUE up to the end of the line, "\n" for newlines).
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.util.Properties;

import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringSerializer;

public class TxProducer {
    public static void main(String[] args) throws Exception {
        Properties p = new Properties();
        p.put("bootstrap.servers", args[0]);
        p.put("transactional.id", "sluice-test-tx-" + ProcessHandle.current().pid());
        p.put("key.serializer", StringSerializer.class.getName());
        p.put("value.serializer", StringSerializer.class.getName());
        try (KafkaProducer<String, String> prod = new KafkaProducer<>(p)) {
            prod.initTransactions();
            BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
            String line;
            while ((line = in.readLine()) != null) {
                if (line.equals("begin")) prod.beginTransaction();
                else if (line.equals("commit")) prod.commitTransaction();
                else if (line.equals("abort")) {
                    prod.flush();
                    prod.abortTransaction();
                } else if (line.startsWith("send ")) {
                    String[] f = line.split(" ", 3);
                    prod.send(new ProducerRecord<>(args[1], Integer.parseInt(f[1]), null,
                                                   f[2].replace("\\n", "\n"))).get();
                }
            }
        }
    }
}
