-- Cheaper writes, measured with perf during `just bench batch`:
-- * A row (input series + output as JSON text) is about 2.7 KB, past the TOAST threshold, so
--   Postgres compressed it with pglz on every insert: a quarter of the database's CPU. lz4
--   compresses the same text several times faster (and decompresses faster on reads).
-- * Job ids are compared in the primary key index on every insert; under the database's
--   C.UTF-8 locale each comparison went through strcoll. Ids are ASCII, so byte order ("C")
--   is the same order at memcmp cost. The same holds for function names.
ALTER TABLE inference_results
    ALTER COLUMN input_data SET COMPRESSION lz4,
    ALTER COLUMN output     SET COMPRESSION lz4,
    ALTER COLUMN error      SET COMPRESSION lz4,
    ALTER COLUMN metadata   SET COMPRESSION lz4,
    ALTER COLUMN parameters SET COMPRESSION lz4;
ALTER TABLE inference_results
    ALTER COLUMN job_id     TYPE text COLLATE "C",
    ALTER COLUMN model_name TYPE text COLLATE "C";
