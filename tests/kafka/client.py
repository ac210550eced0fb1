"""A Kafka client that is not ours: the stock confluent-kafka library, as downstream teams use it.

consume: read TOPIC from the beginning until EXPECT distinct keys were seen (or IDLE seconds
         pass without a new record), write every record as one JSON line to OUT, and print a
         summary: records, distinct keys, duplicates, header problems.
produce: send each line of IN (JSON {"key": str|null, "value": str}) to TOPIC and wait for acks.
--config FILE adds the librdkafka properties of FILE (`key=value` lines, `#` comments: TLS and
SASL settings) to either.
"""

import argparse
import json
import sys
import time
import uuid

from confluent_kafka import Consumer, Producer


def properties(path):
    if path is None:
        return {}
    settings = {}
    with open(path) as lines:
        for line in lines:
            line = line.strip()
            if line and not line.startswith("#"):
                key, _, value = line.partition("=")
                settings[key.strip()] = value.strip()
    return settings


def consume(args):
    consumer = Consumer({
        "bootstrap.servers": args.brokers,
        "group.id": f"orbit-test-reader-{uuid.uuid4()}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        # tansu's group join waits about half the session timeout.
        "session.timeout.ms": 6000,
        **properties(args.config),
    })
    consumer.subscribe([args.topic])
    seen, records, header_problems = set(), 0, []
    last_new = time.monotonic()
    deadline = time.monotonic() + args.timeout
    with open(args.out, "w") as out:
        while len(seen) < args.expect and time.monotonic() < deadline:
            if time.monotonic() - last_new > args.idle and records > 0:
                break
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error():
                print(f"consumer error: {message.error()}", file=sys.stderr)
                continue
            records += 1
            key = message.key().decode() if message.key() is not None else None
            headers = {k: (v.decode() if v is not None else None) for k, v in (message.headers() or [])}
            value = message.value().decode() if message.value() is not None else None
            if args.check_headers:
                body = json.loads(value)
                expected = {
                    "orbit-function": body.get("function"),
                    "orbit-status": body.get("status"),
                    "orbit-schema-version": str(body.get("schema_version")),
                }
                for name, want in expected.items():
                    if headers.get(name) != want:
                        header_problems.append(f"{key}: {name}={headers.get(name)!r}, value says {want!r}")
                if body.get("job_id") != key:
                    header_problems.append(f"key {key} but job_id {body.get('job_id')}")
            if key not in seen:
                last_new = time.monotonic()
            seen.add(key)
            out.write(json.dumps({"key": key, "value": value, "headers": headers,
                                  "partition": message.partition(), "offset": message.offset(), "timestamp": message.timestamp()[1]}) + "\n")
    consumer.close()
    print(json.dumps({"records": records, "distinct": len(seen),
                      "duplicates": records - len(seen), "header_problems": header_problems[:20]}))


def produce(args):
    producer = Producer({"bootstrap.servers": args.brokers, "enable.idempotence": True, "acks": "all",
                         **properties(args.config)})
    failures = []

    def report(err, _message):
        if err is not None:
            failures.append(str(err))

    with open(args.input) as lines:
        for line in lines:
            record = json.loads(line)
            key = record["key"].encode() if record.get("key") is not None else None
            producer.produce(args.topic, key=key, value=record["value"].encode(), on_delivery=report)
            producer.poll(0)
    remaining = producer.flush(30)
    if failures or remaining:
        print(json.dumps({"failures": failures[:5], "unflushed": remaining}))
        sys.exit(1)
    print(json.dumps({"produced": "ok"}))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["consume", "produce"])
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--expect", type=int, default=0)
    parser.add_argument("--out")
    parser.add_argument("--input")
    parser.add_argument("--timeout", type=float, default=120)
    parser.add_argument("--idle", type=float, default=15)
    parser.add_argument("--check-headers", action="store_true")
    parser.add_argument("--config")
    args = parser.parse_args()
    consume(args) if args.command == "consume" else produce(args)


if __name__ == "__main__":
    main()
