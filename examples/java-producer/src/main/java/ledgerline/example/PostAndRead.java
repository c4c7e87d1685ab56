package ledgerline.example;

import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Publishes a posting and a hold's life (the hold, then a partial capture) to ledgerline, and
 * reads each outcome back from the query API by its delivery offset (read-your-writes), the way
 * docs/PRODUCERS.md describes.
 *
 * <pre>
 * PostAndRead BOOTSTRAP TOPIC API_URL KEY_PREFIX ENTITY DEBIT_ACCOUNT CREDIT_ACCOUNT CURRENCY DATE
 * </pre>
 *
 * Prints one line per request, "KEY OUTCOME PARTITION:OFFSET", and exits 1 if the API does
 * not answer 200 for one of them.
 */
public final class PostAndRead {
    private record Sent(String key, RecordMetadata at) {}

    /** The requests' effective date (YYYY-MM-DD), in an open period of the entity. */
    private static String date;

    public static void main(String[] args) throws Exception {
        if (args.length != 9) {
            System.err.println("usage: PostAndRead BOOTSTRAP TOPIC API_URL KEY_PREFIX ENTITY DEBIT CREDIT CURRENCY DATE");
            System.exit(2);
        }
        String bootstrap = args[0], topic = args[1], api = args[2], prefix = args[3];
        String entity = args[4], debit = args[5], credit = args[6], currency = args[7];
        date = args[8];

        String invoice = prefix + "-invoice", hold = prefix + "-hold", capture = prefix + "-capture";
        List<Sent> sent = new ArrayList<>();
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(producerSettings(bootstrap))) {
            // An ordinary posting, keyed by its idempotency key.
            sent.add(send(producer, topic, invoice, request(invoice, entity, null, null,
                    lines(debit, credit, "10.00", currency))));
            // A hold and its capture share the hold's key as the record key, so that they share
            // a partition and are decided in the order they were published.
            sent.add(send(producer, topic, hold, request(hold, entity, "PENDING", null,
                    lines(debit, credit, "7.00", currency))));
            sent.add(send(producer, topic, hold, request(capture, entity, "POST_PENDING", hold,
                    lines(debit, credit, "5.00", currency))));
        }

        HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
        boolean allAnswered = true;
        for (Sent s : sent) {
            String minOffsets = s.at().partition() + ":" + s.at().offset();
            URI uri = URI.create(api + "/v1/requests/" + URLEncoder.encode(s.key(), StandardCharsets.UTF_8)
                    + "?min_offsets=" + minOffsets + "&wait_ms=20000");
            HttpResponse<String> answer = http.send(
                    HttpRequest.newBuilder(uri).timeout(Duration.ofSeconds(30)).GET().build(),
                    HttpResponse.BodyHandlers.ofString());
            if (answer.statusCode() != 200) {
                System.err.println(s.key() + ": HTTP " + answer.statusCode() + " " + answer.body());
                allAnswered = false;
                continue;
            }
            System.out.println(s.key() + " " + field(answer.body(), "outcome") + " " + minOffsets);
        }
        System.exit(allAnswered ? 0 : 1);
    }

    /** Idempotent, every in-sync replica acknowledges: a retry never writes a request twice. */
    private static Properties producerSettings(String bootstrap) {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        return p;
    }

    /** Sends and waits for the broker's acknowledgement: its partition and offset. */
    private static Sent send(KafkaProducer<String, String> producer, String topic, String recordKey,
                             String json) throws Exception {
        RecordMetadata at = producer.send(new ProducerRecord<>(topic, recordKey, json)).get();
        return new Sent(field(json, "idempotency_key"), at);
    }

    private static String request(String key, String entity, String kind, String pendingId, String lines) {
        StringBuilder json = new StringBuilder("{\"idempotency_key\":\"").append(key)
                .append("\",\"entity_id\":\"").append(entity)
                .append("\",\"effective_date\":\"").append(date)
                .append("\",\"source\":\"java-example\"");
        if (kind != null) {
            json.append(",\"kind\":\"").append(kind).append('"');
        }
        if (pendingId != null) {
            json.append(",\"pending_id\":\"").append(pendingId).append('"');
        }
        return json.append(",\"lines\":").append(lines).append('}').toString();
    }

    private static String lines(String debit, String credit, String amount, String currency) {
        String line = "{\"account_id\":\"%s\",\"side\":\"%s\",\"amount\":\"%s\",\"currency\":\"%s\"}";
        return "[" + String.format(line, debit, "D", amount, currency) + ","
                + String.format(line, credit, "C", amount, currency) + "]";
    }

    /** A string field of a flat JSON text (enough for this example's own requests and answers). */
    private static String field(String json, String name) {
        Matcher m = Pattern.compile("\"" + Pattern.quote(name) + "\"\\s*:\\s*\"([^\"]*)\"").matcher(json);
        return m.find() ? m.group(1) : "?";
    }
}
