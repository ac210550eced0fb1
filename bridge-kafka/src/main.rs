//! `bridge-kafka`: will mirror RESULTS to the Kafka topic `inference_results` (and turn
//! `inference_requests` records into jobs). Its own issue builds it; until then this binary
//! says so and exits non-zero, so nothing mistakes it for a running bridge.

fn main() {
    eprintln!("bridge-kafka is not built yet: results are not mirrored to Kafka");
    std::process::exit(2);
}
