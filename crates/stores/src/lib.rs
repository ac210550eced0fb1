//! The layouts of Orbit's stores, in one library that their writers (the sinks) and their
//! reader (the gateway) both use, so a key or a column changes in one place:
//! - [`job_cache`]: Redis, the job states and final views the gateway answers status reads
//!   from, and the counters;
//! - [`results_table`]: Postgres, the `inference_results` table every result is recorded in.

pub mod job_cache;
pub mod results_table;
