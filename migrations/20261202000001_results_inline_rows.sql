-- Keep rows up to a page (8160 bytes) inline and uncompressed. A row of a 64-point job is
-- about 2.6 KB, just past the default TOAST threshold (2 KB), so every insert ran lz4 over its
-- JSON; but a series of full-precision floats barely compresses (20,000 rows took 51 MB
-- compressed, 54 MB not), so that work bought nothing. Measured on 20,000 real rows with
-- `INSERT ... SELECT ... ON CONFLICT DO NOTHING`: 243-277 ms instead of 341-437 ms.
-- Rows past a page (long series) are still compressed and moved out of line as before.
ALTER TABLE inference_results SET (toast_tuple_target = 8160);
